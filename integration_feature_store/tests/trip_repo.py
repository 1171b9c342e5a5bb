"""What the tests of integration_feature_store expect, written out once: the repo's folder, the
saved feature table, the fields of its feature view by kind, in the view's order, and the files
whose state a failed run must leave as it was."""

import hashlib
import sys
from pathlib import Path

import pandas as pd

from hamilton_feast.testing import copy_repo, generate_data, run

REPO = Path(__file__).resolve().parent.parent
NAME = REPO.name
FEATURE_TABLE = "data/driver_trip_features.parquet"
RAW_TRIPS = "data/raw_trips.parquet"
CALENDAR_FEATURES = ["day_of_week", "is_weekend", "month", "hour_of_day"]
PER_DRIVER_FEATURES = [
    "driver_trip_dist_mean_3h",
    "driver_trip_dist_max_3h",
    "driver_trip_dist_min_3h",
    "driver_trips_3h",
    "driver_trip_dist_mean_24h",
    "driver_trips_24h",
]
FEATURE_VIEW_FIELDS = [*CALENDAR_FEATURES, "trip_dist_pct_rank_3h_all_drivers", *PER_DRIVER_FEATURES]
# What Feast reads: a failed or refused run must leave these byte-identical.
STATE_FILES = ["data/registry.db", "data/online_store.db", FEATURE_TABLE]
ON_DEMAND_FIELDS = [
    "request_day_of_week",
    "request_is_weekend",
    "request_hour_of_day",
    "requested_dist_vs_driver_mean_3h",
]


def applied_copy(destination: Path, *generate_args: str, apply_args=()) -> Path:
    """A copy of this repo in `destination` with fresh raw trips, run through `python apply.py`."""
    repo_dir = copy_repo(REPO, destination)
    generate_data(repo_dir, *generate_args)
    run([sys.executable, "apply.py", *apply_args], cwd=repo_dir)
    return repo_dir


def feature_table(repo_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(repo_dir / FEATURE_TABLE)


def state_hashes(repo_dir: Path) -> dict[str, str]:
    """The sha256 of each of STATE_FILES."""
    return {name: hashlib.sha256((repo_dir / name).read_bytes()).hexdigest() for name in STATE_FILES}
