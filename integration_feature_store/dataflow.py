"""This repo's Hamilton dataflow: its settings, its driver, and what executing it returns.

One DAG runs from the raw trip columns through the transforms and the saved feature table to
the Feast objects that serve them.

    python dataflow.py      # redraw dag.png and lineage.png (and their .dot) from the code
"""

from datetime import timedelta
from pathlib import Path

import yaml
from hamilton import driver
from hamilton.io.utils import get_file_metadata

import feast_objects
import feature_table
import generate_data
import lineage
import raw_data
import trip_features
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
MODULES = [raw_data, trip_features, feature_table, feast_objects]
# Each saver node -> the input naming where it saves (and where the Feast source reads).
SAVED_TABLE_PATHS = {"saved_driver_trip_features": "driver_trip_features_path"}


def settings() -> dict:
    """The driver's inputs: everything about this repo that is configuration, not code.

    Paths are absolute, resolved against this folder: Feast's duckdb offline store would
    resolve a relative source path against the current directory instead.
    """
    feature_store_yaml = yaml.safe_load((REPO_DIR / "feature_store.yaml").read_text())
    return {
        "project_name": feature_store_yaml["project"],
        "raw_trips_path": str(REPO_DIR / generate_data.RAW_TRIPS_PATH),
        "driver_trip_features_path": str(REPO_DIR / "data" / "driver_trip_features.parquet"),
        "driver_trip_stats_ttl": timedelta(days=1),
    }


def build_driver(*adapters) -> driver.Driver:
    """A Hamilton driver over the loading, the transforms, the feature table and the Feast objects,
    with any lifecycle adapters given (e.g. one that reports the run to OpenLineage)."""
    return driver.Builder().with_modules(*MODULES).with_adapters(*adapters).build()


FEAST_OBJECT_TYPES = (Project, Entity, DataSource, FeatureView, OnDemandFeatureView, FeatureService)


def feast_object_names(dr: driver.Driver) -> list[str]:
    """The nodes that return Feast objects."""
    return sorted(
        v.name
        for v in dr.list_available_variables()
        if isinstance(v.type, type) and issubclass(v.type, FEAST_OBJECT_TYPES)
    )


def saved_feature_table(path: str) -> dict:
    """What saving the feature table returns, for a table saved earlier; an error if none is."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"no feature table at {path}: run `python apply.py` first, which computes and saves it"
        )
    return get_file_metadata(path)


def saver_names(dr: driver.Driver) -> list[str]:
    """The nodes that save a table for Feast to read (`@save_to`)."""
    return sorted(
        v.name for v in dr.list_available_variables() if v.tags.get("hamilton.data_saver") is True
    )


def _traced_feast_objects(dr: driver.Driver, inputs: dict, overrides: dict) -> lineage.Lineage:
    """Execute the Feast-object nodes; their lineage, with every view tagged with the
    fingerprints of the code it derives from (see lineage.py)."""
    objects = dr.execute(feast_object_names(dr), inputs=inputs, overrides=overrides)
    traced = lineage.Lineage(dr, objects)
    traced.stamp()
    return traced


def feast_objects_by_name(
    recompute_features: bool = True, only: list[str] | None = None, dr: driver.Driver | None = None
) -> dict:
    """Execute the DAG and return each Feast object under its node name, each view tagged with
    the fingerprints of the code it derives from (see lineage.py).

    With `recompute_features`, the features are computed from the raw trips, validated and
    saved first (`only` narrows that to the savers named); the table saved last time stands in
    for every saver not recomputed.
    """
    dr = dr or build_driver()
    inputs = settings()
    savers = saver_names(dr)
    recomputed = set(savers if only is None else only) if recompute_features else set()
    overrides = {
        name: saved_feature_table(inputs[SAVED_TABLE_PATHS[name]])
        for name in savers
        if name not in recomputed
    }
    return _traced_feast_objects(dr, inputs, overrides).feast_objects


def current_lineage() -> lineage.Lineage:
    """The lineage of every feature as the code in this folder defines it, without reading or
    computing any data: each saved table is assumed to be where the settings put it."""
    inputs = settings()
    overrides = {
        name: {"file_metadata": {"path": inputs[path_input]}}
        for name, path_input in SAVED_TABLE_PATHS.items()
    }
    return _traced_feast_objects(build_driver(), inputs, overrides)


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
    """The whole DAG as a graphviz graph: raw columns, transforms, checks, saver, Feast objects."""
    graph = build_driver().display_all_functions(
        None, orient="LR", show_legend=False, deduplicate_inputs=False
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


def draw_lineage(output_stem: Path = REPO_DIR / "lineage") -> None:
    """Write the field lineage as `lineage.dot` (which the tests compare) and `lineage.png`."""
    graph = lineage.lineage_picture(current_lineage())
    output_stem.with_suffix(".dot").write_text(graph.source)
    graph.render(output_stem, format="png", cleanup=True)


if __name__ == "__main__":
    draw()
    draw_lineage()
