"""Fresh features from a stream of raw events, computed by the repo's own DAG: the same modules,
functions and @check_output checks as the batch run, on micro-batches.

    events --decode (events.py)--> trips --refuse the bad ones (dead letters)--> a micro-batch
      --padded with window_overlap of the trips before it (padding.py)--> the repo's DAG --> rows
      --> the online store: each entity's latest row, through the view's push source, at once
      --> every offline_every, in a thread of its own while the next batches are computed: the
          trips appended to the raw data, the rows pushed to the offline store through the same
          push source; then the events are acknowledged

- **Whole windows.** A micro-batch is computed with every trip of the `window_overlap` before it
  (the raw data's, and those streamed since), so each trailing window of its rows is whole,
  the all-drivers rank included, and a row equals the batch run's (means to the rounding of
  sums begun at another row).
- **At least once, written once.** Events are acknowledged only after their trips and rows are
  written; after a crash they are delivered again. A trip already in the raw data is not
  computed again; rows missing from the offline store for trips already in the raw data (a
  crash between the two writes) are computed on start. Both writes replace their file whole
  (the raw data through atomic.py, the offline store through Feast's own writer), so a kill
  leaves each old or new.
- **Bad input.** An event whose fields do not parse, of an unknown entity, conflicting with a
  trip already in the raw data, late, or refused by the repo's own checks (raw_data.py's, the
  features' @check_output) goes to the dead-letter stream with its reason; the rest of its
  batch goes on. A check that fails is pinned on the earliest trip whose row fails it (rows
  depend only on the trips before them, so the failing prefixes are found by bisection).
- **Order.** Rows are computed in event-time order. A trip is held back until `allowed_lateness`
  after its event time, so trips arriving that late are still merged in order; a trip whose
  event time is before the latest one computed is late: counted, dead-lettered, never merged.

The consumer's status (what it read, wrote and refused) is written to data/stream/status.json,
which `hamilton-feast online --check` reads to report a consumer that falls behind.
"""

import argparse
import collections
import contextlib
import dataclasses
import io
import json
import os
import signal
import statistics
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from hamilton.data_quality.base import DataValidationError

from feast import FeatureStore
from feast.data_source import PushMode
from hamilton_feast import atomic, events, padding, redis_stream, script
from hamilton_feast.notices import known_notices_hidden
from hamilton_feast.redis_stream import Event, RedisStream, StoppedWaiting, StreamLost

STATUS = Path("data/stream/status.json")  # in the repo's folder
# A moment of a batch (computed, pushed, raw, offline): the consumer stops there for a minute, with
# a file data/stream/paused-<moment> to say so, so that the fault tests can kill it at that
# moment. Never set in normal use.
PAUSE_AT = "HAMILTON_FEAST_STREAM_PAUSE_AT"
# What the repo's checks raise on a trip they refuse.
REFUSALS = (DataValidationError, ValueError)


class EventSource(Protocol):
    """Where the raw events come from (redis_stream.RedisStream is the one shipped)."""

    def read(self, count: int, wait: timedelta) -> list[Event]: ...

    def acknowledge(self, ids: list[str]) -> None: ...  # an empty list does nothing

    def dead_letter(self, refused: list[tuple[Event, str]]) -> None: ...


def _pause(repo_path: Path, moment: str) -> None:
    if os.environ.get(PAUSE_AT) == moment:
        marker = repo_path / STATUS.parent / f"paused-{moment}"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        time.sleep(60)


def _utc(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """The frame with its time columns in UTC nanoseconds, whatever their zone and unit: one
    type for the raw data's trips, the streamed ones and the offline store's keys."""
    for field in schema:
        if pa.types.is_timestamp(field.type) and field.name in frame:
            frame[field.name] = frame[field.name].dt.tz_convert("UTC").dt.as_unit("ns")
    return frame


@dataclasses.dataclass
class Outcome:
    """What became of a micro-batch's trips (positions are the frame's index)."""

    rows: pd.DataFrame
    accepted: list  # positions of the trips whose rows were computed
    repeats: list  # positions of trips already in the raw data, exactly
    refused: dict  # position -> reason
    late: int = 0


class MicroBatches:
    """The repo's saved table computed on micro-batches of raw trips, whatever brought them: the
    history (raw data and streamed trips of the last window_overlap) kept in memory, the rows
    pushed through the table's push source. `dag` holds the repo's modules and its table nodes."""

    def __init__(self, repo, dag, store: FeatureStore, table: str | None = None):
        tables = [t for t in repo.saved_table_names if repo.saved_table(t, "the stream").push_sources]
        if table is None and len(tables) != 1:
            raise ValueError(f"the stream needs one saved table read through a push source; found {len(tables)} "
                             f"({', '.join(tables) or 'none'}): name the table")
        self.spec = repo.saved_table(table or tables[0], "the stream")
        if not self.spec.push_sources:
            raise ValueError(f"saved table {self.spec.name!r} is read by no push source; expected one, through "
                             "which the stream writes its rows")
        self.repo_path, self.dag, self.store = repo.path, dag, store
        script.quiet_hamilton_errors()  # a refused trip is a dead letter with its reason, not a logged traceback
        self.push_source = self.spec.push_sources[0]
        self.overlap = pd.Timedelta(repo.overlap_for("the stream"))
        self.time = self.spec.time_column
        self.keys = [*self.spec.join_keys, self.time, *([self.spec.created_column] if self.spec.created_column else [])]
        self.raw_path = Path(repo.inputs[self.spec.loader_input])
        if not self.raw_path.is_file():
            raise FileNotFoundError(f"no raw data at {self.raw_path}: the stream adds to it; expected the file "
                                    f"{self.spec.loader_input} names")
        repo.saved_tables_found()  # the feature table must exist: apply first
        self._raw = pq.read_table(self.raw_path)
        self.schema = self._raw.schema
        raw = _utc(self._raw.to_pandas(), self.schema)
        self.known = pd.MultiIndex.from_frame(raw[self.spec.join_keys].drop_duplicates())
        offline_latest = self._offline_latest()
        start = min(offline_latest, raw[self.time].max()) if offline_latest is not None else raw[self.time].min()
        self.history = raw[raw[self.time] >= start - self.overlap].reset_index(drop=True)
        self.watermark = raw[self.time].max()
        self._unflushed: list[tuple[pd.DataFrame, pd.DataFrame]] = []
        self._writing, self._writing_trips, self._write_error = None, 0, None
        self.rows_computed = self.trips_written = 0
        self.recovered = self._catch_up(offline_latest, self.history, [], online=True)
        self._offline_written = self._offline_stamp()
        if len(self.history) > 1:  # the first run of the DAG loads numba's kernels: not on the first batch
            self._computed(self.history.tail(1), self.history.iloc[:-1])

    # --- the offline store -----------------------------------------------------------------
    def _offline(self, since=None) -> pa.Table:
        table = ds.dataset(self.spec.path, format="parquet")
        if since is None:
            return table.to_table(columns=[self.time])
        since = pa.scalar(since.to_pydatetime(), pa.timestamp("us", tz="UTC")).cast(table.schema.field(self.time).type)
        return table.to_table(columns=self.keys, filter=ds.field(self.time) >= since)

    def _offline_stamp(self) -> tuple:
        """The offline table's file (or folder) as it is now: to tell whether another writer,
        such as a batch apply, replaced it since this consumer wrote it."""
        stat = self.spec.path.stat()
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _offline_latest(self) -> pd.Timestamp | None:
        latest = pc.max(self._offline().column(self.time)).as_py()
        return None if latest is None else pd.Timestamp(latest).tz_convert("UTC")

    def _catch_up(self, offline_latest: pd.Timestamp | None, history: pd.DataFrame, unwritten: list,
                  online: bool) -> int:
        """Rows for the trips the raw data has and the offline store lacks: those after its latest
        row (a crash between the two writes of a flush), computed and pushed now (online too, with
        `online`). `history` is the trips kept in memory; `unwritten`, the (trips, rows) computed
        but not yet in the raw data."""
        since = offline_latest if offline_latest is not None else history[self.time].min()
        offline = self._offline(since)
        written = _utc(offline.to_pandas(), offline.schema)
        if unwritten:
            pending = pd.concat([trips[self.keys] for trips, _ in unwritten]).drop_duplicates()
            pending = history[self.keys].merge(pending, how="left", indicator=True)
            history = history[pending["_merge"].to_numpy() == "left_only"]
        candidates = history[history[self.time] >= since]
        if len(written):
            present = candidates[self.keys].merge(written.drop_duplicates(), how="left", indicator=True)["_merge"]
            candidates = candidates[present.to_numpy() == "left_only"]
        if candidates.empty:
            return 0
        rows = self._computed(candidates, history.drop(index=candidates.index))
        self._push_offline(rows)
        if online:
            self._push_online(rows)
        return len(rows)

    # --- a micro-batch ---------------------------------------------------------------------
    def _computed(self, trips: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
        rows, own = padding.padded(history, trips, self.time, self.overlap)
        return padding.computed(self.dag, self.spec.name, self.spec.loader, rows, own, self.time)

    def _first_refused(self, trips: pd.DataFrame) -> tuple[int, str]:
        """The earliest trip whose row the repo's checks refuse, and why: rows depend only on the
        trips before them, so a prefix of the trips fails exactly when it holds that trip."""
        passes, fails, reason = 0, len(trips), None
        while fails - passes > 1:
            middle = (passes + fails) // 2
            try:
                self._computed(trips.iloc[:middle], self.history)
                passes = middle
            except REFUSALS as error:
                fails, reason = middle, error
        if reason is None:
            try:
                self._computed(trips.iloc[:fails], self.history)
                raise RuntimeError("the checks refused a micro-batch but none of its prefixes")
            except REFUSALS as error:
                reason = error
        return fails - 1, _reason(reason)

    def process(self, trips: pd.DataFrame) -> Outcome:
        """Compute a micro-batch of decoded trips (their index: positions) and push each entity's
        latest row online; the trips and rows wait for `flush`."""
        trips = _utc(trips, self.schema).sort_values(self.time, kind="stable")
        outcome = Outcome(rows=pd.DataFrame(), accepted=[], repeats=[], refused={})
        keys = self.spec.join_keys
        unknown = ~pd.MultiIndex.from_frame(trips[keys]).isin(self.known)
        for position, key in zip(trips.index[unknown], trips.loc[unknown, keys].to_numpy().tolist()):
            outcome.refused[position] = (f"{', '.join(f'{k} {v}' for k, v in zip(keys, key))} is unknown: the raw data "
                                         f"has no trip of it; expected one of the {len(self.known)} known (a new one "
                                         "comes in through the raw data and a batch apply)")
        trips = trips[~unknown]
        twice = trips.duplicated(self.keys, keep="first")
        if twice.any():  # published twice within the batch: a repeat if equal, else a conflict
            self._sort_out_twice(trips, twice, outcome)
            trips = trips[~twice]
        old = trips[trips[self.time] <= self.watermark]
        if len(old):
            self._sort_out_old(old, outcome)
            sorted_out = {*outcome.repeats, *outcome.refused}
            trips = trips.drop(index=[p for p in old.index if p in sorted_out])
        while len(trips):
            try:
                rows = self._computed(trips, self.history)
                break
            except REFUSALS:
                at, reason = self._first_refused(trips)
                outcome.refused[trips.index[at]] = reason
                trips = trips.drop(index=trips.index[at])
        if len(trips):
            _pause(self.repo_path, "computed")
            self._push_online(rows)
            _pause(self.repo_path, "pushed")
            self.history = pd.concat([self.history, trips], ignore_index=True)
            self.watermark = max(self.watermark, trips[self.time].max())
            self._unflushed.append((trips, rows))
            self.rows_computed += len(rows)
            outcome.rows, outcome.accepted = rows, list(trips.index)
        return outcome

    def _sort_out_twice(self, trips: pd.DataFrame, twice: pd.Series, outcome: Outcome) -> None:
        firsts = trips[~twice].set_index(self.keys)
        for position, row in trips[twice].iterrows():
            first = firsts.loc[tuple(row[self.keys])]
            if all(_same(row[c], first[c]) for c in firsts.columns):
                outcome.repeats.append(position)
            else:
                outcome.refused[position] = (f"it conflicts with a trip of the same {', '.join(self.keys)} in its "
                                             "micro-batch, which has other values; expected a trip once")

    def _sort_out_old(self, old: pd.DataFrame, outcome: Outcome) -> None:
        """Trips no later than the latest computed: a trip already in the raw data exactly (a
        repeat: delivered again after a crash, or published twice) is skipped; one with a trip's
        keys but other values conflicts; one before the latest is late. Ties are in order."""
        known = self.history[self.history[self.time] >= old[self.time].min()]
        matched = old.reset_index(names="position__").merge(known, on=self.keys, how="left", suffixes=("", "__known"),
                                                            indicator="merged")
        for row in matched.itertuples(index=False):
            position = row.position__
            if row.merged == "both":
                same = all(_same(getattr(row, c), getattr(row, f"{c}__known")) for c in old.columns if c not in self.keys)
                if same:
                    outcome.repeats.append(position)
                else:
                    outcome.refused[position] = (f"it conflicts with the trip of the same {', '.join(self.keys)} already "
                                                 "in the raw data, which has other values; expected a trip once")
            elif getattr(row, self.time) < self.watermark:
                outcome.late += 1
                behind = self.watermark - getattr(row, self.time)
                outcome.refused[position] = (f"late: its {self.time} {getattr(row, self.time)} is {behind} before the "
                                             f"latest trip already computed ({self.watermark}); merged now it would "
                                             "change rows already served, so it is not (see allowed_lateness)")
        outcome.repeats = sorted(set(outcome.repeats))

    def _push_online(self, rows: pd.DataFrame) -> None:
        order = [self.time, *([self.spec.created_column] if self.spec.created_column else [])]
        latest = rows.sort_values(order, kind="stable").drop_duplicates(self.spec.join_keys, keep="last")
        with known_notices_hidden():
            self.store.push(self.push_source, latest, to=PushMode.ONLINE)

    def _push_offline(self, rows: pd.DataFrame) -> None:
        with known_notices_hidden(), contextlib.redirect_stdout(io.StringIO()):  # Feast's Spark store prints a path
            self.store.push(self.push_source, rows, to=PushMode.OFFLINE)

    def flush(self) -> int:
        """Append the computed trips to the raw data and push their rows to the offline store,
        and wait for it; the number of trips written. Then their events may be acknowledged."""
        self.start_writing()
        return self.finish_writing()

    def start_writing(self) -> None:
        """Start writing the computed trips and rows (as `flush`) in a thread of their own, so
        that micro-batches go on being computed and pushed online meanwhile; after the previous
        write finished (call `finish_writing` first to acknowledge its events)."""
        self.finish_writing()
        if not self._unflushed:
            return
        writing, self._unflushed = self._unflushed, []
        # The history as it is now: the trips computed from here on are not in it.
        self._writing = threading.Thread(target=self._write, args=(writing, self.history), daemon=True)
        self._writing_trips = sum(len(trips) for trips, _ in writing)
        self._writing.start()
        self.history = self.history[self.history[self.time] >= self.watermark - self.overlap].reset_index(drop=True)

    def finish_writing(self) -> int:
        """Wait for the write in progress; the number of trips it wrote. Its error, if any, is raised here."""
        writing, self._writing = self._writing, None
        if writing is None:
            return 0
        writing.join()
        if self._write_error is not None:
            error, self._write_error = self._write_error, None
            raise error
        self.trips_written += self._writing_trips
        return self._writing_trips

    def _write(self, writing: list, history: pd.DataFrame) -> None:
        try:
            if self._offline_stamp() != self._offline_written:
                # Replaced since (a batch apply recomputed it from the raw data as it then was): rows
                # for the trips this consumer wrote to the raw data after that are written again.
                self.recovered += self._catch_up(self._offline_latest(), history, writing, online=False)
            trips = pd.concat([t for t, _ in writing], ignore_index=True)
            rows = pd.concat([r for _, r in writing], ignore_index=True)
            added = pa.Table.from_pandas(trips[self.schema.names], preserve_index=False).cast(self.schema)
            self._raw = pa.concat_tables([self._raw, added])
            with atomic.replaced(self.raw_path) as temporary:
                pq.write_table(self._raw, temporary)
            _pause(self.repo_path, "raw")
            self._push_offline(rows)
            self._offline_written = self._offline_stamp()
            _pause(self.repo_path, "offline")
        except BaseException as error:  # raised in the consumer's thread by finish_writing
            self._write_error = error

    @property
    def unflushed(self) -> int:
        """Trips computed and not yet written (being written included)."""
        return sum(len(trips) for trips, _ in self._unflushed) + (self._writing_trips if self._writing else 0)


def _same(one, other) -> bool:
    if isinstance(one, float) and isinstance(other, float):
        return one == other or (np.isnan(one) and np.isnan(other))
    return one == other


def _reason(error: Exception) -> str:
    """The repo's refusal as one line."""
    if isinstance(error, DataValidationError):
        return "refused by a check: " + "; ".join(m.strip() for m in error.args[0])
    return f"refused by a check: {error}"


# --- the consumer --------------------------------------------------------------------------------

@dataclasses.dataclass
class Counts:
    read: int = 0
    rows: int = 0
    flushed: int = 0
    repeats: int = 0
    refused: int = 0
    late: int = 0
    batches: int = 0
    batch_seconds: float = 0.0  # the median time a micro-batch took, from read to pushed, of the last 100


class Status:
    """data/stream/status.json: where the consumer reads, how far it got, what it counted."""

    def __init__(self, repo_path: Path, source: RedisStream):
        self.path = repo_path / STATUS
        self.source = source
        previous = json.loads(self.path.read_text()) if self.path.is_file() else {}
        same_stream = (previous.get("redis"), previous.get("stream"), previous.get("group")) == (
            redis_stream.shown(source.url), source.name, source.group)
        self.read_before = previous.get("read_up_to") if same_stream else None
        self.counts = Counts(**previous.get("counts", {})) if same_stream else Counts()
        self.started = datetime.now(timezone.utc)

    def write(self, micro: MicroBatches, waiting: int) -> None:
        status = {
            "redis": redis_stream.shown(self.source.url), "stream": self.source.name, "group": self.source.group,
            "dead_letters": self.source.dead_letters, "pid": os.getpid(), "started": self.started.isoformat(),
            "written": datetime.now(timezone.utc).isoformat(), "read_up_to": self.source.read_up_to,
            "computed_until": micro.watermark.isoformat(), "unflushed": micro.unflushed, "held_back": waiting,
            "counts": dataclasses.asdict(self.counts),
        }
        with atomic.replaced(self.path) as temporary:
            temporary.write_text(json.dumps(status, indent=1))


def read_status(repo_path: Path) -> dict | None:
    path = Path(repo_path) / STATUS
    return json.loads(path.read_text()) if path.is_file() else None


def _micro_batch(source: EventSource, settings: dict) -> list[Event]:
    """Events until the batch holds batch_events, or batch_wait after its first arrived; waits up
    to batch_wait for a first one."""
    limit, wait = settings["batch_events"], settings["batch_wait"]
    batch = source.read(limit, wait)
    closes = time.monotonic() + wait.total_seconds()
    while batch and len(batch) < limit and time.monotonic() < closes:
        more = source.read(limit - len(batch), timedelta(seconds=closes - time.monotonic()))
        if not more:
            break
        batch += more
    return batch


def consume(micro: MicroBatches, source: EventSource, settings: dict, status: Status | None = None,
            until_idle: bool = False, stop: threading.Event | None = None, say=print) -> Counts:
    """Read micro-batches from `source` and compute them until SIGTERM or Ctrl-C or `stop` is
    set (or, with `until_idle`, until a read finds nothing and nothing waits); the counts."""
    counts = status.counts if status else Counts()
    stopping = []
    handlers = {}
    def stop_on(signum, _frame):
        stopping.append(signum)
        if hasattr(source, "stop_waiting"):  # a read waiting for Redis gives up
            source.stop_waiting.set()

    if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
        handlers = {s: signal.signal(s, stop_on) for s in (signal.SIGTERM, signal.SIGINT)}
    held = pd.DataFrame()  # decoded trips waiting for allowed_lateness to pass
    ids: dict[int, Event] = {}  # a held or unflushed trip's event, by its position
    unacknowledged: list[str] = []  # events of the trips computed since the last write began
    being_written: list[str] = []  # events of the trips being written
    last_flush, position = time.monotonic(), 0

    def written(wait_for_all: bool = False):
        """Acknowledge the events of the write in progress once it is done; start writing what
        was computed since (in the background; with `wait_for_all`, waiting for it too)."""
        nonlocal last_flush, unacknowledged, being_written
        flushed = micro.finish_writing()
        source.acknowledge(being_written)
        _pause(micro.repo_path, "acknowledged")
        micro.start_writing()
        being_written, unacknowledged, last_flush = unacknowledged, [], time.monotonic()
        if wait_for_all:
            flushed += micro.finish_writing()
            source.acknowledge(being_written)
            being_written = []
        counts.flushed += flushed
        if status:
            status.write(micro, len(held))
        if flushed:
            say(f"wrote {flushed} trips to the raw data and their rows to the offline store, computed until "
                f"{micro.watermark:%Y-%m-%d %H:%M:%S} UTC ({counts.read} read, {counts.refused} refused, "
                f"{counts.late} late, {counts.repeats} repeats)")

    recent = collections.deque(maxlen=100)  # how long the last micro-batches took
    try:
        while not stopping and not (stop and stop.is_set()):
            batch = _micro_batch(source, settings)
            began = time.monotonic()
            counts.read += len(batch)
            trips, bad = events.decode([event.fields for event in batch], micro.schema)
            trips.index += position
            for offset, event in enumerate(batch):
                ids[position + offset] = event
            refused = {position + offset: reason for offset, reason in bad.items()}
            position += len(batch)
            held = pd.concat([held, trips]) if len(held) else trips
            now = pd.Timestamp.now(tz="UTC")
            times = held[micro.time] if len(held) else pd.Series(dtype="datetime64[ns, UTC]")
            ready = (times <= now - settings["allowed_lateness"]) | (times > now)
            if ready.any():
                outcome = micro.process(held[ready])
                held = held[~ready]
                refused |= outcome.refused
                counts.rows += len(outcome.rows)
                counts.late += outcome.late
                counts.repeats += len(outcome.repeats)
                source.acknowledge([ids.pop(p).id for p in outcome.repeats])
                unacknowledged += [ids.pop(p).id for p in outcome.accepted]
            if refused:
                counts.refused += len(refused)
                for p, reason in refused.items():
                    say(f"refused {ids[p].id}: {reason}", file=sys.stderr)
                source.dead_letter([(ids.pop(p), why) for p, why in refused.items()])
            if batch:
                recent.append(time.monotonic() - began)
                counts.batches += 1
                counts.batch_seconds = round(statistics.median(recent), 4)
            idle = not batch and held.empty
            if idle and micro.unflushed:
                written(wait_for_all=True)
            elif time.monotonic() - last_flush >= settings["offline_every"].total_seconds():
                written()
            if until_idle and idle and not micro.unflushed:
                break
    except StoppedWaiting as stopped:
        # Asked to stop while Redis did not answer: what was computed is written; its events are
        # not acknowledged, so they come again.
        micro.flush()
        say(f"{stopped}: the trips computed are written, their events will be read again", file=sys.stderr)
        return counts
    except StreamLost:
        # What was read is computed and written (held-back trips too: nothing newer can come from
        # the lost stream); it cannot be acknowledged.
        if len(held):
            for p, reason in micro.process(held).refused.items():
                say(f"refused {ids[p].id} (not dead-lettered: the stream is lost): {reason}", file=sys.stderr)
            held = held.iloc[:0]
        micro.flush()
        if status:
            status.write(micro, 0)
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    written(wait_for_all=True)
    return counts


def arguments(doc: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of a repo's stream.py."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default=os.environ.get(redis_stream.URL_VARIABLE, redis_stream.DEFAULT_URL),
                        help=f"the stream's Redis (default: ${redis_stream.URL_VARIABLE}, else {redis_stream.DEFAULT_URL})")
    parser.add_argument("--feature-store-yaml", default="feature_store.yaml",
                        help="the store configuration in this folder, e.g. feature_store.redis.yaml")
    parser.add_argument("--until-idle", action="store_true", help="stop once the stream has nothing more to read")
    parser.add_argument("--accept-loss", action="store_true",
                        help="go on after Redis lost entries (it restarted empty), with what the stream holds now")
    parser.add_argument("--landing", type=Path, metavar="FOLDER",
                        help="with the Spark configuration: read raw parquet files landing in FOLDER with Spark "
                             "Structured Streaming instead of Redis")
    return parser.parse_args(argv)


def source_of(repo, url: str) -> RedisStream:
    settings = repo.stream_settings()
    return RedisStream(url, settings["name"], settings["group"], settings["dead_letters"])


def run(repo, dag, args: argparse.Namespace, stop: threading.Event | None = None) -> Counts:
    """stream.py: the consumer of the repo's stream, one per stream (a second one started on
    the same folder waits for the first to stop: a standby)."""
    from hamilton_feast import feast_operations

    settings = repo.stream_settings()
    if args.landing:
        return _run_on_spark(repo, dag, args)
    source = source_of(repo, args.redis)
    status_path = repo.path / STATUS
    with atomic.locked(status_path):
        status = Status(repo.path, source)
        source.open(status.read_before, accept_loss=args.accept_loss)
        store = feast_operations.feature_store(str(repo.path), repo.feature_store_yaml)
        micro = MicroBatches(repo, dag, store)
        print(f"Reading {source} as {source.group}/{source.consumer}: micro-batches of up to "
              f"{settings['batch_events']} trips, padded with {pd.Timedelta(repo.window_overlap)} of history"
              + (f"; {micro.recovered} rows written that a crash had left out" if micro.recovered else ""), flush=True)
        status.write(micro, 0)
        return consume(micro, source, settings, status, until_idle=args.until_idle, stop=stop)



def _run_on_spark(repo, dag, args: argparse.Namespace) -> Counts:
    """stream.py --landing FOLDER: the same micro-batches, read by Spark Structured Streaming from
    raw files landing in FOLDER (spark.stream); its checkpoint in data/spark/stream_checkpoint/."""
    from hamilton_feast import feast_operations, spark

    if repo.offline_store != "spark":
        raise ValueError(f"--landing reads files with Spark, but {repo.feature_store_yaml} has a {repo.offline_store} "
                         "offline store; expected the Spark configuration (--feature-store-yaml feature_store.spark.yaml)")
    landing = (repo.path / args.landing).resolve()
    if not landing.is_dir():
        raise FileNotFoundError(f"no folder {landing}; expected the folder raw parquet files land in")
    with atomic.locked(repo.path / STATUS):
        store = feast_operations.feature_store(str(repo.path), repo.feature_store_yaml)
        micro = MicroBatches(repo, dag, store)
        query = spark.stream(micro, landing, repo.path / "data" / "spark" / "stream_checkpoint", files_per_batch=1)
        print(f"Reading raw files landing in {landing} with Spark Structured Streaming, a micro-batch a file", flush=True)
        try:
            if args.until_idle:
                query.processAllAvailable()
            else:
                query.awaitTermination()
        finally:
            query.stop()
    return Counts(rows=micro.rows_computed, flushed=micro.trips_written)
