"""Compute, validate and save the trip features, then register the Feast objects that serve them.

    python apply.py                 # transforms + registration (like `feast apply`)
    python apply.py --materialize   # ... and load the online store up to now
    python apply.py --plan          # what apply would change in the registry; changes nothing
    python apply.py --feature-store-yaml feature_store.redis.yaml   # with Redis online

One Hamilton execution runs the whole DAG; registration goes through Feast's own plan/apply
machinery, so objects removed from the code are removed from the registry as with `feast apply`.
Each run that computes features and each registration is reported to OpenLineage (by default
to data/openlineage/events.jsonl; see openlineage_events.py).
"""

import argparse
import contextlib
import io
import logging
import os
import sys
from datetime import datetime, timezone

from hamilton.data_quality.base import DataValidationError

import dataflow
import openlineage_events
from feast import FeatureStore
from feast.errors import FeastError
from feast.repo_operations import apply_total_with_repo_instance

# What bad code or bad data raises; reported in a few lines, with nothing registered.
EXPECTED_ERRORS = (DataValidationError, FeastError, ValueError, FileNotFoundError)


def open_store(feature_store_yaml: str = "feature_store.yaml") -> FeatureStore:
    # Hamilton logs a failing node with its traceback; the errors we expect get a short
    # message instead, and anything unexpected still raises with its traceback.
    for name in ("hamilton.execution.graph_functions", "hamilton.driver"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return FeatureStore(
        repo_path=str(dataflow.REPO_DIR), fs_yaml_file=dataflow.REPO_DIR / feature_store_yaml
    )


def computing_driver(store: FeatureStore):
    """The driver for a run that computes features, reporting the run to OpenLineage."""
    return dataflow.build_driver(openlineage_events.hamilton_adapter(store.project))


def register(store: FeatureStore, objects: dict, quiet: bool = False) -> None:
    """Register exactly these objects (as `feast apply` does), then report it to OpenLineage.

    `quiet` keeps Feast's listing of every changed property (whole protos) off the screen.
    """
    contents = dataflow.repo_contents(objects.values(), store.project)
    print(f"Applying changes for project {store.project}")
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        apply_total_with_repo_instance(
            store, store.project, store.registry, contents, skip_source_validation=False
        )
    openlineage_events.emit_registrations(objects.values(), store.project)


def report(error: Exception, outcome: str = "nothing was registered") -> int:
    """Print an expected error as `error: <outcome>:` and its messages; return exit code 1."""
    messages = error.args[0] if isinstance(error, DataValidationError) else [str(error)]
    print(f"error: {outcome}:", file=sys.stderr)
    for message in messages:
        print(f"  {message.strip()}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="show the changes, apply nothing")
    mode.add_argument("--materialize", action="store_true", help="also materialize to now")
    parser.add_argument(
        "--feature-store-yaml",
        default="feature_store.yaml",
        help="the store configuration in this folder, e.g. feature_store.redis.yaml",
    )
    args = parser.parse_args(argv)

    store = open_store(args.feature_store_yaml)
    try:
        if args.plan:
            objects = dataflow.feast_objects_by_name(recompute_features=False)
            registry_diff, infra_diff, _ = store.plan(
                dataflow.repo_contents(objects.values(), store.project)
            )
            print(registry_diff.to_string())
            print(infra_diff.to_string())
            return 0
        register(store, dataflow.feast_objects_by_name(dr=computing_driver(store)))
    except EXPECTED_ERRORS as error:
        return report(error)
    if args.materialize:
        store.materialize_incremental(end_date=datetime.now(timezone.utc))
    return 0


def exit_with(exit_code: int) -> None:
    if exit_code:
        # The error is reported and nothing is left to clean up. Skip interpreter teardown: on a
        # loaded machine a native library thread was seen to abort it ("terminate called without
        # an active exception"), which would turn exit code 1 into a crash.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    sys.exit(0)


if __name__ == "__main__":
    exit_with(main())
