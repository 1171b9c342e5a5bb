"""This repo's Hamilton dataflow: its settings, its driver, and the Feast objects it returns.

    python dataflow.py      # redraw dag.png (and dag.dot) from the code
"""

from datetime import timedelta
from pathlib import Path

import yaml
from hamilton import driver

import feast_objects
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    LabelView,
    OnDemandFeatureView,
    Project,
    StreamFeatureView,
)
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY
from feast.permissions.permission import Permission
from feast.repo_contents import RepoContents

REPO_DIR = Path(__file__).resolve().parent


def settings() -> dict:
    """The driver's inputs: everything about this repo that is configuration, not code."""
    feature_store_yaml = yaml.safe_load((REPO_DIR / "feature_store.yaml").read_text())
    return {
        "project_name": feature_store_yaml["project"],
        # Relative to this folder: Feast resolves FileSource paths against the repo path.
        "driver_stats_path": "data/driver_stats.parquet",
        "driver_quality_labels_path": "data/driver_quality_labels.parquet",
        "feature_logging_path": "data",
        "driver_stats_ttl": timedelta(days=1),
    }


def build_driver() -> driver.Driver:
    """A Hamilton driver over the Feast object definitions."""
    return driver.Builder().with_modules(feast_objects).build()


def feast_object_names(dr: driver.Driver) -> list[str]:
    """Every node of the DAG that is computed, i.e. every Feast object."""
    return sorted(v.name for v in dr.list_available_variables() if not v.is_external_input)


def feast_objects_by_name() -> dict:
    """Execute the DAG and return each Feast object under its node name."""
    dr = build_driver()
    return dr.execute(feast_object_names(dr), inputs=settings())


def repo_contents(objects, project_name: str) -> RepoContents:
    """Sort Feast objects into the RepoContents that `feast apply` parses from a repo's files.

    Every source is a node of its own here, so nothing is nested inside another object
    that would have to be dug out the way Feast's file parser does. Raises ValueError for what
    Feast would accept but should not: a project other than feature_store.yaml's, or a view
    whose entity no node defines (Feast registers such a view silently).
    """
    kinds = {
        "projects": Project,
        "data_sources": DataSource,
        "entities": Entity,
        "stream_feature_views": StreamFeatureView,
        "feature_views": FeatureView,
        "on_demand_feature_views": OnDemandFeatureView,
        "label_views": LabelView,
        "feature_services": FeatureService,
        "permissions": Permission,
    }
    sorted_objects: dict[str, list] = {kind: [] for kind in kinds}
    for obj in objects:
        # StreamFeatureView is a FeatureView: the first matching kind wins.
        kind = next((k for k, cls in kinds.items() if isinstance(obj, cls)), None)
        if kind is None:
            raise TypeError(f"{obj!r} is not a Feast object that can be applied")
        sorted_objects[kind].append(obj)

    project_names = [project.name for project in sorted_objects["projects"]]
    if project_names != [project_name]:
        raise ValueError(
            f"the DAG defines project(s) {project_names}, but feature_store.yaml names project "
            f"{project_name!r}; they must be the same single project"
        )
    entity_names = sorted(entity.name for entity in sorted_objects["entities"])
    for kind in ("feature_views", "stream_feature_views", "on_demand_feature_views", "label_views"):
        for view in sorted_objects[kind]:
            for entity in view.entities:
                if entity not in entity_names and entity != DUMMY_ENTITY.name:
                    raise ValueError(
                        f"{view.name!r} uses entity {entity!r}, which no node of the DAG defines; "
                        f"expected one of {entity_names}: return the entity from its own function"
                    )

    sorted_objects["entities"].append(DUMMY_ENTITY)
    return RepoContents(**sorted_objects)


def dag_picture():
    """The DAG as a graphviz graph: Feast objects, their dependencies and the settings they use."""
    graph = build_driver().display_all_functions(
        None, orient="TB", show_legend=False, deduplicate_inputs=False
    )
    # Hamilton lists nodes in no fixed order, so the lines are sorted for a stable file; shared
    # inputs are not deduplicated, since the box would be named after a consumer picked at random.
    graph.body.sort()
    return graph


def draw(output_stem: Path = REPO_DIR / "dag") -> None:
    """Write the DAG as DOT source (`dag.dot`, which the tests compare) and as `dag.png`."""
    graph = dag_picture()
    output_stem.with_suffix(".dot").write_text(graph.source)
    graph.render(output_stem, format="png", cleanup=True)


if __name__ == "__main__":
    draw()
