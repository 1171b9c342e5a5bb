"""Register this repo's Feast objects: build the Hamilton driver, execute it, apply the result.

    python apply.py          # like `feast apply`: create, update and delete to match the code
    python apply.py --plan   # like `feast plan`: print what apply would change, change nothing
    python apply.py --feature-store-yaml feature_store.redis.yaml   # with Redis online

Both go through Feast's own plan/apply machinery, so objects removed from the code are
removed from the registry exactly as `feast apply` would remove them.
"""

import argparse
import os
import sys

import dataflow
from feast import FeatureStore
from feast.errors import FeastError
from feast.repo_operations import apply_total_with_repo_instance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="show the changes, apply nothing")
    parser.add_argument(
        "--feature-store-yaml",
        default="feature_store.yaml",
        help="the store configuration in this folder, e.g. feature_store.redis.yaml",
    )
    args = parser.parse_args(argv)

    store = FeatureStore(
        repo_path=str(dataflow.REPO_DIR), fs_yaml_file=dataflow.REPO_DIR / args.feature_store_yaml
    )
    try:
        objects = dataflow.feast_objects_by_name()
        contents = dataflow.repo_contents(objects.values(), store.project)
        if args.plan:
            registry_diff, infra_diff, _ = store.plan(contents)
            print(registry_diff.to_string())
            print(infra_diff.to_string())
            return 0
        print(f"Applying changes for project {store.project}")
        apply_total_with_repo_instance(
            store, store.project, store.registry, contents, skip_source_validation=False
        )
    except (FeastError, ValueError) as error:
        print(f"error: nothing was registered: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_code = main()
    if exit_code:
        # The error is reported and nothing is left to clean up. Skip interpreter teardown: on a
        # loaded machine a native library thread was seen to abort it ("terminate called without
        # an active exception"), which would turn exit code 1 into a crash.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
