"""Register this repo's Feast objects: build the Hamilton driver, execute it, apply the result.

    python apply.py          # like `feast apply`: create, update and delete to match the code
    python apply.py --plan   # like `feast plan`: print what apply would change, change nothing
    python apply.py --feature-store-yaml feature_store.redis.yaml   # with Redis online
"""

from hamilton import driver

from hamilton_feast import Repo, feast_operations, script


def main() -> None:
    args = script.apply_arguments(__doc__)
    repo = Repo(__file__, args.feature_store_yaml)  # settings.yaml: the DAG's modules, paths, TTL
    dr = (
        driver.Builder()
        .with_modules(*repo.modules, feast_operations)
        .with_config(repo.config)
        .build()
    )
    inputs = {**repo.inputs, "full_diff": args.full_diff}  # Feast's own diff, or one line per object
    if args.plan:
        print(dr.execute(["plan"], inputs=inputs)["plan"])
    else:
        dr.execute(["registered"], inputs=inputs)


if __name__ == "__main__":
    script.run(main)
