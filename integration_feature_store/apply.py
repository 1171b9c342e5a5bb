"""Compute, validate and save the trip features, then register the Feast objects that serve them.

    python apply.py                 # raw trips -> features -> checks -> saved table -> registry
    python apply.py --materialize   # ... and load the online store up to now
    python apply.py --plan          # what apply would change in the registry; computes nothing
    python apply.py --feature-store-yaml feature_store.redis.yaml   # with Redis online

One Hamilton execution runs the whole DAG: this folder's modules (listed in settings.yaml) and
hamilton_feast's Feast operations, which register through Feast's own plan/apply, deletions
included. Each run is reported to OpenLineage (by default to data/openlineage/events.jsonl).
"""

from hamilton import driver

from hamilton_feast import Repo, feast_operations, openlineage, script


def main() -> None:
    args = script.apply_arguments(__doc__, materialize=True)
    repo = Repo(__file__, args.feature_store_yaml)  # settings.yaml: modules, paths, TTL, tables
    reporting = [] if args.plan else [*openlineage.adapters(repo), *script.progress_bar(repo)]
    dr = (
        driver.Builder()
        .with_modules(*repo.modules, repo.saved_tables, feast_operations)
        .with_config(repo.config)
        .with_adapters(*reporting)
        .build()
    )
    inputs = {**repo.inputs, "full_diff": args.full_diff}  # Feast's own diff, or one line per object
    if args.plan:  # the table saved last stands in for the saver: nothing is computed or written
        print(dr.execute(["plan"], inputs=inputs, overrides=repo.saved_tables_found())["plan"])
    else:
        dr.execute(["materialized" if args.materialize else "registered"], inputs=inputs)


if __name__ == "__main__":
    script.run(main)
