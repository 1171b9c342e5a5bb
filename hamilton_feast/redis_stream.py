"""The stream of raw events in Redis Streams: what the consumer reads (streaming.py), what the
producer publishes, and how far behind the consumer is (for `hamilton-feast online --check`).

- `RedisStream`: one consumer of a consumer group (created at the stream's start if missing).
  `read` returns first the entries delivered before and never acknowledged (after a crash),
  then new ones; `acknowledge` once their rows are written; `dead_letter` adds refused entries,
  each with its reason, to the dead-letter stream and acknowledges them, both or neither (a
  transaction). A Redis that restarted empty (its group gone, or read less far than this
  consumer read) is detected: `StreamLost`, one line saying what was lost.
- `publish` and `replay`: the producer, for the demo and the benchmark.
- `lag`: the entries not yet processed and how long ago the oldest was published (an entry's id
  is the time Redis received it, in milliseconds).

Needs the `redis` client (`pip install ".[redis]"`).
"""

import dataclasses
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "redis://127.0.0.1:6379/0"
URL_VARIABLE = "STREAM_REDIS_URL"  # where the stream's Redis is, when not given on the command line
CONSUMER = "stream.py"  # the group's one consumer: a fixed name, so a restart reads its own pending entries
ID_FIELD, REASON_FIELD = "_stream_id", "_reason"  # added to a dead letter's fields
GOING_ON = "Start the consumer with --accept-loss to go on with what the stream holds now"


class StreamLost(ValueError):
    """Redis no longer holds what the consumer read: it restarted empty, or from an older copy."""


class StoppedWaiting(Exception):
    """The consumer was asked to stop while it waited for Redis to answer."""


@dataclasses.dataclass(frozen=True)
class Event:
    id: str
    fields: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Lag:
    waiting: int | None  # entries delivered and not acknowledged, plus those not yet delivered
    oldest: datetime | None  # when Redis received the oldest of them
    dead_letters: int


def _id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def received_at(entry_id: str) -> datetime:
    """When Redis received an entry: its id's milliseconds."""
    return datetime.fromtimestamp(_id(entry_id)[0] / 1000, timezone.utc)


def shown(url: str) -> str:
    """A Redis URL without its password, to print and to write down."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class RedisStream:
    """The stream `name` at `url`, read by consumer `consumer` of group `group`; refused entries
    go to the stream `dead_letters`."""

    def __init__(self, url: str, name: str, group: str, dead_letters: str, consumer: str = CONSUMER,
                 timeout: float | None = None):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url, self.name, self.group, self.dead_letters, self.consumer = url, name, group, dead_letters, consumer
        # No retries inside the client: a lost connection comes here, which checks on reconnecting
        # whether Redis restarted empty.
        self.client = redis.Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0),
                                           socket_connect_timeout=5, socket_timeout=timeout)
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._response_error = redis.ResponseError
        self.stop_waiting = threading.Event()  # set: a command waiting for Redis gives up (StoppedWaiting)
        self._pending_from = "0"  # reading this consumer's pending entries first, from here
        self.read_up_to = "0-0"  # the highest id this consumer was given
        self.run_id = None

    def __str__(self) -> str:
        return f"stream {self.name!r} at {shown(self.url)}"

    # --- the consumer's side -------------------------------------------------------------
    def open(self, read_before: str | None = None, accept_loss: bool = False) -> None:
        """Join the group, creating it (and the stream) at the stream's start if missing. With
        `read_before`, the highest id this consumer was given in an earlier run: a group gone or
        read less far means Redis lost entries, which raises StreamLost unless `accept_loss`."""
        self.run_id = self._call(lambda: self.client.info("server")["run_id"])
        group = self._group()
        lost = self._loss(group, read_before)
        if lost and not accept_loss:
            raise StreamLost(f"{lost}. {GOING_ON}")
        if lost:
            print(f"Going on although {lost[0].lower()}{lost[1:]} (--accept-loss)", file=sys.stderr, flush=True)
        if group is None:
            self._call(lambda: self.client.xgroup_create(self.name, self.group, id="0", mkstream=True))
        elif not lost and read_before:
            self.read_up_to = read_before

    def _loss(self, group: dict | None, read_before: str | None) -> str | None:
        if not read_before or _id(read_before) == (0, 0):
            return None
        if group is None:
            return (f"Redis lost {self}: its consumer group {self.group!r} is gone, though this consumer had read "
                    f"it up to {read_before} (received {received_at(read_before):%Y-%m-%d %H:%M:%S} UTC); Redis "
                    "restarted empty, and the entries it held that were not yet read are lost")
        delivered = group["last-delivered-id"]
        if _id(delivered) < _id(read_before):
            return (f"Redis lost part of {self}: its consumer group {self.group!r} was read up to {delivered} only, "
                    f"though this consumer had read it up to {read_before}; Redis restarted from an older copy")
        return None

    def _group(self, call=None) -> dict | None:
        try:
            groups = (call or self._call)(lambda: self.client.xinfo_groups(self.name))
        except self._response_error as error:
            if "no such key" in str(error).lower():
                return None
            raise
        return next((g for g in groups if g["name"] == self.group), None)

    def _check_same_server(self) -> None:
        """After a lost connection or an acknowledgement that missed: if Redis restarted, it must
        still hold the group, read at least as far as this consumer read; else StreamLost."""
        run_id = self._call(lambda: self.client.info("server")["run_id"], checking=False)
        if run_id == self.run_id:
            return
        lost = self._loss(self._group(), self.read_up_to)
        if lost:
            raise StreamLost(f"{lost}. {GOING_ON}")
        print(f"Redis at {shown(self.url)} restarted with its data; going on", file=sys.stderr, flush=True)
        self.run_id = run_id

    def _call(self, command, checking: bool = True):
        """Run a Redis command; while Redis does not answer, wait (saying so) and retry, then
        check whether it restarted empty. A missing group is StreamLost."""
        pause, said = 0.05, False
        while True:
            try:
                reply = command()
                break
            except self._errors as error:
                if self.stop_waiting.is_set():
                    raise StoppedWaiting(f"stopped while waiting for Redis at {shown(self.url)} ({error})") from None
                if not said:
                    print(f"Waiting for Redis at {shown(self.url)} ({error})", file=sys.stderr, flush=True)
                    said = True
                self.stop_waiting.wait(pause)
                pause = min(pause * 2, 2.0)
            except self._response_error as error:
                if str(error).startswith("NOGROUP"):
                    lost = self._loss(None, self.read_up_to) or f"{self}: {error}"
                    raise StreamLost(f"{lost}. {GOING_ON}") from None
                raise
        if said and checking and self.run_id is not None:
            self._check_same_server()
        return reply

    def read(self, count: int, wait: timedelta) -> list[Event]:
        """Up to `count` entries: this consumer's pending ones first (delivered before a restart,
        never acknowledged), then new ones, waiting up to `wait` for the first."""
        while self._pending_from is not None:
            reply = self._call(lambda: self.client.xreadgroup(
                self.group, self.consumer, {self.name: self._pending_from}, count=count))
            entries = reply[0][1] if reply else []
            if not entries:
                self._pending_from = None
                break
            self._pending_from = entries[-1][0]
            deleted = [entry_id for entry_id, fields in entries if fields is None]  # trimmed since
            if deleted:
                self.acknowledge(deleted)
            events = [Event(entry_id, fields) for entry_id, fields in entries if fields is not None]
            if events:
                return self._given(events)
        block = int(wait.total_seconds() * 1000)
        reply = self._call(lambda: self.client.xreadgroup(
            self.group, self.consumer, {self.name: ">"}, count=count, block=block if block > 0 else None))
        return self._given([Event(entry_id, fields) for entry_id, fields in (reply[0][1] if reply else [])])

    def _given(self, events: list[Event]) -> list[Event]:
        if events and _id(events[-1].id) > _id(self.read_up_to):
            self.read_up_to = events[-1].id
        return events

    def acknowledge(self, ids: list[str]) -> None:
        """The entries are processed: their rows are written, or they were dead-lettered."""
        if not ids:
            return
        acknowledged = 0
        for start in range(0, len(ids), 10_000):
            chunk = ids[start:start + 10_000]
            acknowledged += self._call(lambda: self.client.xack(self.name, self.group, *chunk))
        if acknowledged < len(ids):  # entries Redis no longer knows: did it restart empty?
            self._check_same_server()

    def dead_letter(self, refused: list[tuple[Event, str]]) -> None:
        """Each refused entry, with its reason, to the dead-letter stream, and acknowledged: both
        or neither, so a crash between them never loses one nor letters it twice."""
        if not refused:
            return

        def send():
            transaction = self.client.pipeline(transaction=True)
            for event, reason in refused:
                transaction.xadd(self.dead_letters, {**event.fields, ID_FIELD: event.id, REASON_FIELD: reason})
                transaction.xack(self.name, self.group, event.id)
            return transaction.execute()

        self._call(send)

    # --- the producer's side -------------------------------------------------------------
    def publish(self, events: list[dict[str, str]]) -> list[str]:
        """Append the events to the stream; their ids."""
        def send(chunk):
            pipe = self.client.pipeline(transaction=False)
            for fields in chunk:
                pipe.xadd(self.name, fields)
            return pipe.execute()

        ids = []
        for start in range(0, len(events), 1000):
            ids += self._call(lambda: send(events[start:start + 1000]))
        return ids

    def replay(self, events: list[dict[str, str]], rate: float, on_published=None) -> float:
        """Publish the events in order, `rate` per second (0: as fast as Redis takes them), in
        small pipelines on a steady clock; `on_published(ids, at)` after each. The seconds it took."""
        started = time.monotonic()
        sent = 0
        while sent < len(events):
            due = len(events) if rate <= 0 else min(len(events), int((time.monotonic() - started) * rate) + 1)
            if due > sent:
                ids = self.publish(events[sent:due])
                if on_published:
                    on_published(ids, time.monotonic())
                sent = due
            if rate > 0 and sent < len(events):
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
        return time.monotonic() - started

    # --- how far behind the consumer is ---------------------------------------------------
    def lag(self) -> Lag | None:
        """The entries the group has not processed and when the oldest arrived; None if the
        stream or its group does not exist. A Redis that does not answer raises its error."""
        group = self._group(call=lambda command: command())
        if group is None:
            return None
        oldest = []
        if group["pending"]:
            oldest.append(self.client.xpending(self.name, self.group)["min"])
        undelivered = self.client.xrange(self.name, min=f"({group['last-delivered-id']}", count=1)
        if undelivered:
            oldest.append(undelivered[0][0])
        lag = group.get("lag")
        waiting = None if lag is None else group["pending"] + lag
        first = min(oldest, key=_id) if oldest else None
        dead = self.client.xlen(self.dead_letters)
        return Lag(waiting, received_at(first) if first else None, dead)
