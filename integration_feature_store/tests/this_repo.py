"""What the tests of this folder know about the repo, read from the repo itself (feature_store.yaml,
settings.yaml and the Feast objects of its DAG), so that the tests hold in a copy under another
name, and after the repo is adapted to other data: the project, the raw data file, the saved
table, each feature view with its join keys and fields, the services, the on-demand views and
their request fields, the push sources, and the files a failed run must leave as they were.

Only test_trip_features.py and test_dag.py are about this repo's own features; what they name
is rewritten with the features.
"""

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, PushSource
from feast.types import UnixTimestamp
from hamilton_feast import Repo
from hamilton_feast.testing import copy_repo, generate_data, run

REPO = Path(__file__).resolve().parent.parent

# --- the lines to rewrite when the repo is adapted to other data ---------------------------
# generate_data.py's arguments for a small sample (a few thousand rows over a few days), a
# medium one, a large one (a table that takes a moment to save), and one for the model.
SMALL = ("--trips", "3000", "--drivers", "15", "--days", "3")
MEDIUM = ("--trips", "20000", "--drivers", "20", "--days", "3")  # a table larger than a run's other files
LARGE = ("--trips", "200000", "--drivers", "100", "--days", "7")
MODEL_DATA = ("--trips", "20000", "--drivers", "40", "--days", "10")  # for the model: days to train on and to evaluate


@dataclass(frozen=True)
class CodeEdit:
    """An edit of a transform that changes the values of `fields` (and of nothing else)."""

    file: str
    old: str
    new: str
    fields: list[str]


# The stored features by kind, as test_trip_features.py and test_changes.py check them.
CALENDAR_FEATURES = ["day_of_week", "is_weekend", "month", "hour_of_day"]
PER_DRIVER_FEATURES = ["driver_trip_dist_mean_3h", "driver_trip_dist_max_3h", "driver_trip_dist_min_3h",
                       "driver_trips_3h", "driver_trip_dist_mean_24h", "driver_trips_24h"]
CODE_EDIT = CodeEdit("trip_features.py", 'return event_timestamp.dt.month.astype("int64")',
                     'return (event_timestamp.dt.month % 12 + 1).astype("int64")', ["month"])
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A feature view over a saved table."""

    name: str
    keys: list[str]
    fields: list[str]
    table: str  # the saved table's file, relative to the repo folder
    timestamp: str  # its event timestamp column
    created: str | None  # its created timestamp column
    source: str  # the Feast source reading the table
    push_source: str | None


def _path_of(store_setting) -> str:
    return store_setting["path"] if isinstance(store_setting, dict) else store_setting


def _read() -> dict:
    store = yaml.safe_load((REPO / "feature_store.yaml").read_text())
    repo = Repo(REPO, "feature_store.yaml")
    objects = repo.feast_objects(overrides=repo.saved_tables_as_configured())
    relative = lambda path: str(Path(path).relative_to(REPO))  # noqa: E731
    tables = {str(path): relative(path) for path in repo.saved_table_paths.values()}
    pushes = {o.batch_source.name: o.name for o in objects.values() if isinstance(o, PushSource)}
    join_keys = {o.name: o.join_key for o in objects.values() if isinstance(o, Entity)}
    views = [
        View(o.name, [join_keys[e] for e in o.entities], [f.name for f in o.features], tables[o.batch_source.path],
             o.batch_source.timestamp_field, o.batch_source.created_timestamp_column, o.batch_source.name,
             pushes.get(o.batch_source.name))
        for o in objects.values() if isinstance(o, FeatureView) and getattr(o.batch_source, "path", None) in tables
    ]
    on_demand = [o for o in objects.values() if isinstance(o, OnDemandFeatureView)]
    nodes = repo.driver().list_available_variables()
    loader = next(n for n in nodes if n.tags.get("hamilton.data_loader") is True and "." not in n.name)
    raw_path = next(value for name, value in repo.inputs.items() if name in {
        d for n in nodes if n.name.startswith(f"{loader.name}.") for d in n.required_dependencies})
    return {
        "project": store["project"],
        "registry": _path_of(store["registry"]),
        "online_store": _path_of(store["online_store"]),
        "raw_data": relative(raw_path),
        "loader": loader.name,
        "views": views,
        "services": sorted(o.name for o in objects.values() if isinstance(o, FeatureService)),
        "on_demand_views": {o.name: [f.name for f in o.features] for o in on_demand},
        "request_fields": {f.name: f.dtype for o in on_demand for s in o.source_request_sources.values()
                           for f in s.schema},
    }


_FACTS = _read()
PROJECT: str = _FACTS["project"]
RAW_DATA: str = _FACTS["raw_data"]  # the raw data file, relative to the repo folder
LOADER: str = _FACTS["loader"]  # the data loader reading it
VIEWS: list[View] = _FACTS["views"]
VIEW: View = VIEWS[0]  # where one view will do
SERVICES: list[str] = _FACTS["services"]
ON_DEMAND_VIEWS: dict[str, list[str]] = _FACTS["on_demand_views"]
REQUEST_FIELDS: dict = _FACTS["request_fields"]
REGISTRY, ONLINE_STORE = _FACTS["registry"], _FACTS["online_store"]
# What Feast reads: a failed or refused run must leave these byte-identical.
STATE_FILES = [REGISTRY, ONLINE_STORE, *dict.fromkeys(view.table for view in VIEWS)]


def applied_copy(destination: Path, *generate_args: str, apply_args=()) -> Path:
    """A copy of this repo in `destination` with fresh raw data, run through `python apply.py`."""
    repo_dir = copy_repo(REPO, destination)
    generate_data(repo_dir, *generate_args)
    run([sys.executable, "apply.py", *apply_args], cwd=repo_dir)
    return repo_dir


def saved_table(repo_dir: Path, view: View = VIEW) -> pd.DataFrame:
    return pd.read_parquet(repo_dir / view.table)


def state_hashes(repo_dir: Path) -> dict[str, str]:
    """The sha256 of each of STATE_FILES."""
    return {name: hashlib.sha256((repo_dir / name).read_bytes()).hexdigest() for name in STATE_FILES}


def with_request_data(entity_df: pd.DataFrame, timestamp_column: str = "event_timestamp") -> pd.DataFrame:
    """The entity rows with a value for each request field of the on-demand views: the row's own
    time for a timestamp, 2.0 for a number."""
    values = {name: entity_df[timestamp_column] if dtype == UnixTimestamp else 2.0
              for name, dtype in REQUEST_FIELDS.items()}
    return entity_df.assign(**values)


def entity_rows(rows: pd.DataFrame, view: View = VIEW) -> pd.DataFrame:
    """Entity rows asking about each of `rows` (of a saved table) at its own time, with request
    data, in a column named event_timestamp."""
    frame = rows[[*view.keys, view.timestamp]].rename(columns={view.timestamp: "event_timestamp"})
    return with_request_data(frame.astype({"event_timestamp": "datetime64[us, UTC]"}).reset_index(drop=True))
