"""The online store against the registry: a check an operator can alert on, and a reload that
restores the online store from the offline data.

Feast's registry records, per feature view, the intervals materialization loaded. When the online
store loses its data (a Redis restarted empty, a new sqlite file), the registry still records them,
so `materialize-incremental` loads nothing, and the feature server answers every feature as null
with status PRESENT. So:

- `check`: per online feature view, the entities the offline data has rows for in the view's TTL
  window before its last load (a sample of them), read back from the online store. Each must be
  there, with its latest row's event time; the last load must be newer than `max_age` (default:
  the view's TTL). Any failure, or an online store that cannot be read, is a problem.
- `reload`: materialize every online feature view over its TTL window ending now (all of its
  data for a view without a TTL), whatever the registry says was loaded.
- `check_stream`: in a repo whose stream consumer ran (its status file, data/stream/status.json),
  the events its consumer group has not processed: a problem when the oldest of them arrived
  more than `max_lag` ago (the consumer is behind, or stopped), or when Redis no longer has the
  group or does not answer.
"""

import contextlib
import dataclasses
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from feast import FeatureStore, FeatureView
from hamilton_feast import registry_store, sources
from hamilton_feast.notices import known_notices_hidden

SAMPLE = 1000  # entities read back per view
MAX_LAG = "1 minute"  # the stream consumer is behind when its oldest unprocessed event is older
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclasses.dataclass
class ViewHealth:
    view: str
    loaded_until: datetime | None
    checked: int = 0  # entities read back
    missing: int = 0  # of those, without any value online
    behind: int = 0  # of those, with an older row online than the offline data's latest
    problems: list[str] = dataclasses.field(default_factory=list)

    def ok(self) -> str:
        return f"ok ({self.checked} entities read back)"


@dataclasses.dataclass
class StreamHealth:
    view: str  # the stream, as the report names it
    summary: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)

    def ok(self) -> str:
        return f"ok ({self.summary})"


def _online_views(store: FeatureStore) -> list[FeatureView]:
    return [view for view in store.list_feature_views() if view.online]


def _latest_offline(store: FeatureStore, view: FeatureView, start: datetime, end: datetime) -> list[dict]:
    """A sample of the entities with offline rows in [start, end): their keys and latest event
    time in whole seconds (what the online store reports)."""
    table = sources.source_table(store, view)
    keys = ", ".join(f'{table.column(c.name, "a join key")} AS "{c.name}"' for c in view.entity_columns)
    ts = table.timestamp(view.batch_source.timestamp_field, "the event timestamp")
    rows = duckdb.sql(f"""
        SELECT {keys}, max({ts}) // 1000000000 AS __latest
        FROM read_parquet('{table.files}')
        WHERE {ts} >= {int(start.timestamp() * 1e6) * 1000} AND {ts} < {int(end.timestamp() * 1e6) * 1000}
        GROUP BY ALL
        USING SAMPLE reservoir({SAMPLE} ROWS) REPEATABLE (42)
    """).df()
    return rows.to_dict("records")


def _check_view(store: FeatureStore, view: FeatureView, now: datetime, max_age: timedelta | None) -> ViewHealth:
    intervals = view.materialization_intervals
    health = ViewHealth(view.name, max((end for _, end in intervals), default=None))
    if health.loaded_until is None:
        health.problems.append("never materialized: run `hamilton-feast online --reload`")
        return health
    allowed = max_age or view.ttl
    if allowed and now - health.loaded_until > allowed:
        health.problems.append(f"stale: last loaded {health.loaded_until:%Y-%m-%d %H:%M} UTC, "
                               f"more than {allowed} ago")
    start = health.loaded_until - view.ttl if view.ttl else EPOCH
    expected = _latest_offline(store, view, start, health.loaded_until)
    if not expected:
        return health
    keys = [column.name for column in view.entity_columns]
    names = [feature.name for feature in view.features]
    try:
        with known_notices_hidden():
            online = store.get_online_features(
                features=[f"{view.name}:{name}" for name in names],
                entity_rows=[{key: row[key] for key in keys} for row in expected],
            ).to_dict(include_event_timestamps=True)
    except Exception as error:  # any online store's client error: the check's answer, not a crash
        health.problems.append(f"cannot read the online store: {type(error).__name__}: {error}")
        return health
    health.checked = len(expected)
    for i, row in enumerate(expected):
        if all(online[name][i] is None for name in names):
            health.missing += 1
        elif max(online[f"{name}__ts"][i] for name in names) < row["__latest"]:
            health.behind += 1
    if health.missing:
        empty = "empty" if health.missing == health.checked else "incomplete"
        health.problems.append(
            f"{empty}: {health.missing} of {health.checked} entities with offline rows since "
            f"{start:%Y-%m-%d %H:%M} UTC have no values online (the registry says they were loaded): "
            "run `hamilton-feast online --reload`"
        )
    if health.behind:
        health.problems.append(f"behind: {health.behind} of {health.checked} entities have an older "
                               "row online than offline: run `hamilton-feast online --reload`")
    return health


def check(store: FeatureStore, now: datetime | None = None, max_age: timedelta | None = None) -> list[ViewHealth]:
    """The health of every online feature view (see the module's description)."""
    now = now or datetime.now(timezone.utc)
    views = _online_views(store)
    if not views:
        raise ValueError(f"project {store.project} has no online feature view registered: apply the repo first")
    return [_check_view(store, view, now, max_age) for view in views]


def health_report(healths: list[ViewHealth]) -> str:
    lines = []
    for health in healths:
        state = "; ".join(health.problems) or health.ok()
        lines.append(f"{health.view}: {state}")
    return "\n".join(lines)


def rematerialize(store: FeatureStore, view: str, start: datetime, end: datetime) -> None:
    """Load `view`'s rows of (start, end] into the online store again, replacing what it holds
    for the same event times: recomputed values (after a code change, or a store restarted with
    stale rows) must overwrite the old ones. Feast's Redis store writes a row only when it is
    newer than the stored one, so a rewrite would keep the old values, silently; while this
    runs it writes every row (its `skip_dedup`). Under the registry's lock, as every write."""
    with known_notices_hidden(), registry_store.registry_locked(store), _every_row_written(store):
        store.materialize(start_date=start, end_date=end, feature_views=[view])


@contextlib.contextmanager
def _every_row_written(store: FeatureStore):
    """The online store's deduplication by event time off while the block runs, where it has one."""
    config = store.config.online_store
    if not hasattr(config, "skip_dedup"):
        yield
        return
    before = config.skip_dedup
    config.skip_dedup = True
    try:
        yield
    finally:
        config.skip_dedup = before


def reload(store: FeatureStore, end: datetime | None = None) -> list[tuple[str, datetime, datetime]]:
    """Load every online feature view from the offline data over its TTL window up to `end`
    (default: now), or from the epoch without a TTL; return what was loaded."""
    end = end or datetime.now(timezone.utc)
    loaded = []
    for view in _online_views(store):
        start = end - view.ttl if view.ttl else EPOCH
        print(f"Reloading {view.name} from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
        try:
            rematerialize(store, view.name, start, end)
        except Exception as error:  # e.g. the online store is unreachable
            raise ValueError(
                f"reloading {view.name} failed: {type(error).__name__}: {error}; run the reload "
                "again once the online store answers"
            ) from error
        loaded.append((view.name, start, end))
    return loaded


def check_stream(repo_path: Path, max_lag: timedelta, now: datetime | None = None) -> list[StreamHealth]:
    """The health of the repo's stream consumer, if it ever ran (see the module's description)."""
    from hamilton_feast import redis_stream, streaming

    status = streaming.read_status(repo_path)
    if status is None:
        return []
    url = os.environ.get(redis_stream.URL_VARIABLE) or status["redis"]
    stream = redis_stream.RedisStream(url, status["stream"], status["group"], status["dead_letters"], timeout=10)
    health = StreamHealth(f"{stream} (group {stream.group})")
    try:
        lag = stream.lag()
    except Exception as error:  # the client's connection errors: the check's answer, not a crash
        health.problems.append(f"cannot read the stream: {type(error).__name__}: {error}")
        return [health]
    if lag is None:
        health.problems.append(f"Redis has no group {stream.group!r} on it, which the consumer read up to "
                               f"{status['read_up_to']}: Redis restarted empty or the stream was deleted; see "
                               "docs/streaming.md")
        return [health]
    now = now or datetime.now(timezone.utc)
    waiting = "an unknown number of" if lag.waiting is None else f"{lag.waiting}"
    age = now - lag.oldest if lag.oldest else timedelta(0)
    if age > max_lag:
        health.problems.append(
            f"behind: {waiting} events not yet processed, the oldest received {_rounded(age)} ago (more than "
            f"{max_lag}); the consumer computed trips until {status['computed_until']} and last wrote its status "
            f"at {status['written']}: is stream.py running?")
    health.summary = (f"{waiting} events waiting, the oldest received {_rounded(age)} ago; computed until "
                      f"{status['computed_until']}; {lag.dead_letters} dead letters")
    return [health]


def _rounded(age: timedelta) -> timedelta:
    return timedelta(seconds=round(age.total_seconds()))
