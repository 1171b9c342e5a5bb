"""The features a feature service served, logged where its `LoggingConfig` says.

Feast 0.67 defines feature logging (a `LoggingConfig` on a `FeatureService`, the log's schema,
`FeatureStore.write_logged_features`, and `feast monitor run --source-type log` reading the logs
back), but the only server that wrote logs was its Go feature server, which the Python package
does not ship: `feast serve` logs nothing. So the process that reads features for a model logs
what it read, in Feast's log schema, through Feast's writer:

    log = ServedFeatureLog(store, service)
    with log:                                    # flushes every `flush_every_s` seconds, and at exit
        response = store.get_online_features(features=service, entity_rows=rows)
        log.record(rows, response)               # buffered in memory

Each flush writes one parquet file into the destination folder. Rows recorded since the last
flush are lost if the process is killed; a flush that fails keeps its rows for the next one.
"""

import random
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa

from feast import FeatureService, FeatureStore
from feast.feature_logging import LOG_DATE_FIELD, LOG_TIMESTAMP_FIELD, REQUEST_ID_FIELD, FeatureServiceLoggingSource
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.online_response import OnlineResponse

def _destination(service: FeatureService) -> Path:
    """The folder a service logs to: an absolute path, since Feast 0.67 writes a relative one
    against the working directory and reads it back against the repo."""
    config = service.logging_config
    if config is None:
        raise ValueError(f"feature service {service.name!r} has no logging_config: give it "
                         "LoggingConfig(destination=FileLoggingDestination(path=...)) to log what it serves")
    if not isinstance(config.destination, FileLoggingDestination):
        raise ValueError(f"feature service {service.name!r} logs to a {type(config.destination).__name__}; "
                         "expected a FileLoggingDestination (parquet files in a folder)")
    path = Path(config.destination.path)
    if not path.is_absolute():
        raise ValueError(f"feature service {service.name!r} logs to the relative path {str(path)!r}; expected an "
                         "absolute path (Feast writes a relative one from the working directory, reads it from the repo)")
    return path


def _utc(moment) -> pd.Timestamp | None:
    """A time as a zoned timestamp: epoch seconds (as JSON clients send them), or a datetime
    (without a zone: UTC)."""
    if moment is None:
        return None
    if pd.api.types.is_number(moment):
        return pd.Timestamp(moment, unit="s", tz="UTC")
    moment = pd.Timestamp(moment)
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def _timestamps(values: list, arrow_type: pa.DataType) -> pa.Array:
    """Times as a log column of `arrow_type`, truncated to its unit (Feast logs seconds)."""
    if not all(value is None or isinstance(value, datetime) for value in values):
        moments = [_utc(value) for value in values]
        values = [None if m is None else m.tz_localize(None) if arrow_type.tz is None else m for m in moments]
    # pyarrow reads a zoned datetime as its instant, and one without a zone as UTC.
    return pa.array(values, type=pa.timestamp("us", tz=arrow_type.tz)).cast(arrow_type, safe=False)


class ServedFeatureLog:
    """The log of what `service` served from `store`, buffered and written in batches."""

    def __init__(self, store: FeatureStore, service: FeatureService, flush_every_s: float = 30.0, seed: int = 0):
        self.store, self.service, self.flush_every_s = store, service, flush_every_s
        self.destination = _destination(service)
        self.schema = FeatureServiceLoggingSource(service, store.project).get_schema(store.registry)
        # Each logged feature column: (its projection's name to use, the feature's name).
        self._features = {f"{p.name_to_use()}__{f.name}": (p.name_to_use(), f.name)
                          for p in service.feature_view_projections for f in p.features}
        self._sampler = random.Random(seed)  # for a sample_rate below 1
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    def record(self, entity_rows: list[dict], response: OnlineResponse) -> None:
        """Buffer one request: its entity and request values, and what `response` served for them."""
        if self._sampler.random() >= self.service.logging_config.sample_rate:
            return
        proto = response.proto
        names = list(proto.metadata.feature_names.val)
        values = response.to_dict()
        now = datetime.now(timezone.utc)
        request_id = uuid.uuid4().hex
        rows = [{LOG_TIMESTAMP_FIELD: now, LOG_DATE_FIELD: now.date(), REQUEST_ID_FIELD: request_id, **row}
                for row in entity_rows]
        for column, (view, feature) in self._features.items():
            name = f"{view}__{feature}" if f"{view}__{feature}" in values else feature  # full feature names or not
            result = proto.results[names.index(name)]
            for i, row in enumerate(rows):
                row[column] = values[name][i]
                row[f"{column}__status"] = int(result.statuses[i])
                stamp = result.event_timestamps[i] if i < len(result.event_timestamps) else None
                row[f"{column}__timestamp"] = stamp.ToDatetime(tzinfo=timezone.utc) if stamp is not None else None
        with self._lock:
            self._rows.extend(rows)

    def table(self, rows: list[dict]) -> pa.Table:
        """`rows` in the log's schema (the one `feast monitor run` reads)."""
        columns = {}
        for field in self.schema:
            values = [row.get(field.name) for row in rows]
            if pa.types.is_timestamp(field.type):
                columns[field.name] = _timestamps(values, field.type)
            else:
                columns[field.name] = pa.array(values, type=field.type)
        return pa.table(columns, schema=self.schema)

    def flush(self) -> int:
        """Write the buffered rows as one parquet file in the destination folder; the number written."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            # Feast's file writer needs the folder to exist: "IO Error: Cannot open file ... No such file".
            self.destination.mkdir(parents=True, exist_ok=True)
            self.store.write_logged_features(self.table(rows), self.service)
        except BaseException:
            with self._lock:
                self._rows[:0] = rows  # kept for the next flush
            raise
        return len(rows)

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.flush_every_s):
            try:
                self.flush()
            except Exception as error:  # the next flush retries; say why this one failed
                print(f"error: serving log of {self.service.name} not written to {self.destination}: {error}")

    def __enter__(self) -> "ServedFeatureLog":
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_periodically, name="serving-log", daemon=True)
        self._flusher.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        self.flush()
