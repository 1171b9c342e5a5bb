"""Feast operations as Hamilton nodes. A driver that includes this module beside a repo's modules
registers, plans, materializes and retrieves the Feast objects those modules define:

    (every Feast-object node) -> feast_objects -> repo_contents -> registered -> materialized
                                                               -> plan
    feature_store -> training_set, online_features

Its config comes from `hamilton_feast.Repo(...).config`: which nodes return Feast objects
(collected by type, not by a hand-kept list) and the tags each gets.
"""

import contextlib
import io
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from hamilton.function_modifiers import ResolveAt, group, inject, resolve, source

from feast import FeatureService, FeatureStore
from feast.diff.registry_diff import diff_between
from feast.repo_contents import RepoContents
from feast.repo_operations import apply_total_with_repo_instance
from hamilton_feast import objects, plans, registry_store, sql_registry, training_sets
from hamilton_feast.notices import known_notices_hidden
from hamilton_feast.read_only import store_that_writes_nothing


# Inputs that choose how a node prints what it did, not what it does.
OUTPUT_OPTIONS = ("full_diff",)


def feature_store(repo_path: str, feature_store_yaml: str) -> FeatureStore:
    """The Feast feature store of the repo, as its feature_store.yaml (or the file named) configures
    it; a SQL registry connected now, so that a database that cannot be reached stops a run
    before it computes anything (this node is the first argument of those that register)."""
    return sql_registry.connected(FeatureStore(repo_path=repo_path, fs_yaml_file=Path(repo_path) / feature_store_yaml))


@resolve(
    when=ResolveAt.CONFIG_AVAILABLE,
    decorate_with=lambda feast_object_nodes: inject(
        definitions=group(*(source(name) for name in feast_object_nodes))
    ),
)
def feast_objects(
    definitions: list[Any], feast_object_nodes: list[str], feast_object_tags: dict
) -> dict[str, Any]:
    """Every Feast object the DAG defines, by node name, with the tags the repo adds (the code
    versions each view derives from)."""
    by_node = dict(zip(feast_object_nodes, definitions, strict=True))
    for node, tags in feast_object_tags.items():
        by_node[node].tags.update(tags)
    return by_node


def repo_contents(feast_objects: dict[str, Any], feature_store: FeatureStore) -> RepoContents:
    """The objects as `feast apply` would parse them from a repo's files, checked: one project,
    the one feature_store.yaml names, and every view's entity defined."""
    return objects.repo_contents(feast_objects.values(), feature_store.project)


def plan(
    feature_store: FeatureStore, repo_contents: RepoContents, feature_store_yaml: str, full_diff: bool = False
) -> str:
    """What registering the objects would change, one line per object (see plans.py), or as
    `feast plan` prints it with `full_diff`; writes nothing."""
    with known_notices_hidden(), store_that_writes_nothing(feature_store, feature_store_yaml) as store:
        registry_diff, infra_diff, _ = store.plan(repo_contents)
        logging_changes = plans.logging_changed(store.registry, store.project, repo_contents)
    registry = registry_diff.to_string() if full_diff else plans.summary(registry_diff, logging_changes)
    return f"{registry}\n{infra_diff.to_string()}"


def registered(feature_store: FeatureStore, repo_contents: RepoContents, full_diff: bool = False) -> RepoContents:
    """The objects registered by Feast's own apply, as `feast apply` registers them: created,
    updated and deleted to match the DAG. Prints what changed, one line per object (or Feast's
    own output, with `full_diff`)."""
    print(f"Applying changes for project {feature_store.project}")
    registry, project = feature_store.registry, feature_store.project
    with known_notices_hidden(), registry_store.registry_locked(feature_store):
        logging_changes = plans.logging_changed(registry, project, repo_contents)
        changes = plans.summary(diff_between(registry, project, repo_contents), logging_changes)
        with contextlib.nullcontext() if full_diff else contextlib.redirect_stdout(io.StringIO()):
            apply_total_with_repo_instance(
                feature_store, project, registry, repo_contents, skip_source_validation=False
            )
        if not full_diff:
            print(changes)
        # Feast 0.67 compares on-demand views without their tags, so it applies no change of
        # tags alone (such as new code versions); those views' tags are applied directly.
        for view in repo_contents.on_demand_feature_views:
            if registry.get_on_demand_feature_view(view.name, project, allow_cache=False).tags != view.tags:
                registry.apply_feature_view(view, project)
        # Nor a change of a feature service's logging configuration alone.
        for service in logging_changes:
            registry.apply_feature_service(service, project)
    return repo_contents


def materialized(
    feature_store: FeatureStore, registered: RepoContents, materialize_until: datetime | None = None
) -> list[str]:
    """The feature views loaded into the online store, each from where it was last loaded up
    to `materialize_until` (default: now)."""
    end = materialize_until or datetime.now(timezone.utc)
    with known_notices_hidden(), registry_store.registry_locked(feature_store):
        feature_store.materialize_incremental(end_date=end)
    return [view.name for view in registered.feature_views if view.online]


def _features(feature_store: FeatureStore, features: str | list[str]) -> FeatureService | list[str]:
    """A feature service by name, or a list of "view:feature" references as given."""
    return feature_store.get_feature_service(features) if isinstance(features, str) else features


def training_set(
    feature_store: FeatureStore, entity_df: pd.DataFrame, features: str | list[str]
) -> pd.DataFrame:
    """Point-in-time features for every row of `entity_df`, in its order (see training_sets);
    how long the retrieval took, in seconds, in its attrs["retrieval_seconds"]."""
    started = time.perf_counter()
    answer = training_sets.get_training_set(feature_store, entity_df, _features(feature_store, features))
    answer.attrs["retrieval_seconds"] = time.perf_counter() - started
    return answer


def online_features(
    feature_store: FeatureStore, entity_rows: list[dict], features: str | list[str]
) -> pd.DataFrame:
    """The online store's latest features for each entity row, on-demand features included."""
    return feature_store.get_online_features(
        features=_features(feature_store, features), entity_rows=entity_rows
    ).to_df()
