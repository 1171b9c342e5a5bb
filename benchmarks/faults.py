"""Fault injection on the integration repo: SIGKILL its apply and refresh many times, at random
moments and while the feature table is being saved, and count what each kill left. Prints one
table (docs/faults.md, "When things go wrong", cites it).

    python benchmarks/faults.py                 # 20 random kills, 10 mid-save, 5 mid-refresh
    python benchmarks/faults.py --random 50 --trips 500000
    python benchmarks/faults.py --stream 20     # only the stream's consumer, killed 20 times (needs redis-server)

The stream's campaign: a day of trips published to a real redis-server (a slice before each
run), stream.py (micro-batches of 100 trips, each written at once) SIGKILLed alternately at a
random moment and at each moment of a batch in turn (computed, pushed online, raw data written,
offline store written, acknowledged), then run to the end; then counted against a batch apply over the same trips: trips
lost, rows doubled, the online store equal to the batch's.

After every kill: can the feature table be read in full, and is it the previous or the new one;
does the registry load and list the views; were temporaries left. After all of them: does the
next apply succeed, clean up, and leave an online store that `hamilton-feast online --check`
finds complete. Seeded: the same kill moments each run.
"""

import argparse
import hashlib
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from feast import FeatureStore
from hamilton_feast.testing import copy_repo, edit, generate_data, killed

ROOT = Path(__file__).resolve().parent.parent
TABLE = "data/driver_trip_features.parquet"
APPLY = [sys.executable, "apply.py", "--materialize"]
REFRESH = [str(Path(sys.executable).parent / "hamilton-feast"), "changes", "--refresh"]
MONTH = ('return event_timestamp.dt.month.astype("int64")', 'return (event_timestamp.dt.month % 12 + 1).astype("int64")')


def moment(repo: Path, at_seconds: float | None):
    """When to kill: after `at_seconds`, or (None) once the table's temporary exists."""
    if at_seconds is not None:
        return lambda elapsed: elapsed >= at_seconds
    data = repo / "data"
    return lambda _: any(p.name.startswith(".driver_trip_features.parquet.tmp-") for p in data.iterdir())


def inspect(repo: Path) -> dict:
    """What a kill left: the table's digest (None if unreadable), the registry whole, temporaries."""
    try:
        pd.read_parquet(repo / TABLE)
        table = hashlib.sha256((repo / TABLE).read_bytes()).hexdigest()
    except Exception:
        table = None
    try:
        views = {v.name for v in FeatureStore(repo_path=str(repo)).list_feature_views()}
        registry = views == {"driver_trip_stats"}
    except Exception:
        registry = False
    leftovers = [p.name for p in (repo / "data").iterdir() if ".tmp-" in p.name]
    return {"table": table, "registry": registry, "leftovers": len(leftovers)}


def campaign(repo: Path, name: str, command: list[str], moments: list[float | None]) -> dict:
    """Kill `command` at each moment, then run it to the end; nothing else runs in between, as
    after a crash."""
    outcomes = [(killed(command, repo, moment(repo, at)), inspect(repo)) for at in moments]
    run = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    after = inspect(repo)
    after_kills = [state for result, state in outcomes if result]
    versions = {state["table"] for state in after_kills}
    return {
        "fault": name,
        "kills": len(after_kills),
        "tables unreadable": sum(state["table"] is None for state in after_kills),
        "table versions seen": len(versions - {None}),
        "registry broken": sum(not state["registry"] for state in after_kills),
        "with temporaries left": sum(state["leftovers"] > 0 for state in after_kills),
        "next run ok": run.returncode == 0 and after["registry"] and after["table"] is not None,
        "left after next run": after["leftovers"],
    }


MOMENTS = ["computed", "pushed", "raw", "offline", "acknowledged"]
KEYS = ["driver_id", "event_timestamp", "created"]


def stream_campaign(folder: Path, kills: int, trips: int) -> dict:
    """Kill stream.py `kills` times (see above), then run it to the end; what it left, against
    a batch apply over the same raw trips."""
    import json
    import os

    import numpy as np
    import redis

    from hamilton_feast import events, streaming
    from hamilton_feast.redis_stream import RedisStream
    from hamilton_feast.testing import free_port, start_redis

    data = ["--trips", str(trips), "--drivers", "40", "--days", "3"]
    repo = copy_repo(ROOT / "integration_feature_store", folder / "streamed")
    generate_data(repo, *data, "--stream-days", "1")
    subprocess.run(APPLY, cwd=repo, check=True, capture_output=True)
    batch = copy_repo(ROOT / "integration_feature_store", folder / "batch")
    (batch / "data").mkdir()
    streamed = pd.read_parquet(repo / "data/stream_trips.parquet")
    pd.concat([pd.read_parquet(repo / "data/raw_trips.parquet"), streamed]).to_parquet(batch / "data/raw_trips.parquet")
    subprocess.run(APPLY, cwd=batch, check=True, capture_output=True)
    settings = (repo / "settings.yaml").read_text()
    (repo / "settings.yaml").write_text(settings.replace("batch_events: 1000", "batch_events: 100")
                                        .replace("offline_every: 30 seconds", "offline_every: 0 seconds"))
    port = free_port()
    server = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        stream = RedisStream(url, "raw_trips", "driver_trip_features", "raw_trips_dead_letters")
        # A slice of the day published before each run, the rest before the last one: every run has
        # batches to be killed in, however fast the consumer gets through them.
        published = events.encode(streamed, pq.read_schema(repo / "data/raw_trips.parquet"))
        slices = np.array_split(np.arange(len(published)), kills + 1)
        status, rng, kinds = repo / streaming.STATUS, random.Random(2026), []
        for kill in range(kills):
            stream.publish([published[i] for i in slices[kill]])
            env = {"STREAM_REDIS_URL": url}
            if kill % 2:
                moment = MOMENTS[(kill // 2) % len(MOMENTS)]
                marker = repo / streaming.STATUS.parent / f"paused-{moment}"
                when = lambda _, m=marker: m.exists() and m.name  # noqa: E731
                env[streaming.PAUSE_AT] = moment
            else:
                started, delay = time.time(), rng.uniform(0.0, 2.0)

                def when(_, started=started, delay=delay):
                    begun = json.loads(status.read_text())["started"] if status.exists() else "1970-01-01T00:00Z"
                    at = pd.Timestamp(begun).timestamp()
                    return at > started and time.time() - at > delay and "random"
            kinds.append(killed([sys.executable, "stream.py"], repo, when, env=env, timeout_s=300))
            for marker in (repo / streaming.STATUS.parent).glob("paused-*"):
                marker.unlink()
            table = pd.read_parquet(repo / "data/driver_trip_features.parquet")
            assert not table.duplicated(KEYS).any(), f"kill {kill + 1} ({kinds[-1]}) left a row twice"
        stream.publish([published[i] for i in slices[kills]])
        final = subprocess.run([sys.executable, "stream.py", "--until-idle"], cwd=repo, capture_output=True, text=True,
                               env={**os.environ, "STREAM_REDIS_URL": url})
        raw = pd.read_parquet(repo / "data/raw_trips.parquet")
        table = pd.read_parquet(repo / "data/driver_trip_features.parquet")
        expected = pd.read_parquet(batch / "data/driver_trip_features.parquet")
        lost = len(streamed.merge(raw, how="left", indicator=True).query("_merge == 'left_only'"))
        missing_rows = len(expected[KEYS].merge(table[KEYS], how="left", indicator=True).query("_merge == 'left_only'"))
        drivers = [{"driver_id": int(d)} for d in sorted(expected.driver_id.unique())]
        features = [f"driver_trip_stats:{c}" for c in expected.columns[3:]]
        online = [pd.DataFrame(FeatureStore(repo_path=str(r)).get_online_features(features=features, entity_rows=drivers)
                               .to_dict()) for r in (repo, batch)]
        same_online = all(np.allclose(online[0][c].astype(float), online[1][c].astype(float), rtol=1e-9, equal_nan=True)
                          for c in online[1].columns)
        pending = redis.Redis.from_url(url).xpending("raw_trips", "driver_trip_features")["pending"]
        return {
            "fault": "stream.py killed: " + ", ".join(f"{kinds.count(k)} {k.removeprefix('paused-')}"
                                                       for k in dict.fromkeys(k for k in kinds if k)),
            "kills": sum(bool(k) for k in kinds),
            "trips streamed": len(streamed),
            "trips lost": lost + missing_rows,
            "rows doubled": int(table.duplicated(KEYS).sum()),
            "online == batch": same_online and final.returncode == 0,
            "left unacknowledged": pending,
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def print_table(rows: list[dict]) -> None:
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=20, help="kills at random moments of an apply")
    parser.add_argument("--saving", type=int, default=10, help="kills while the table is saved")
    parser.add_argument("--refresh", type=int, default=5, help="kills while a refresh saves the table")
    parser.add_argument("--trips", default="200000")
    parser.add_argument("--stream", type=int, metavar="KILLS",
                        help="only the stream's campaign: kill stream.py KILLS times (6,000 trips, the last 2,000 streamed)")
    args = parser.parse_args()
    if args.stream:
        with tempfile.TemporaryDirectory() as folder:
            started = time.monotonic()
            row = stream_campaign(Path(folder), args.stream, 6000)
        print(f"the stream's campaign took {time.monotonic() - started:.0f} s\n")
        print_table([row])
        return
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as folder:
        repo = copy_repo(ROOT / "integration_feature_store", Path(folder))
        data_args = ["--trips", args.trips, "--drivers", "100", "--days", "7"]
        generate_data(repo, *data_args)
        started = time.monotonic()
        subprocess.run(APPLY, cwd=repo, check=True, capture_output=True)
        duration = time.monotonic() - started
        generate_data(repo, *data_args, "--seed", "7")  # the kills interrupt a run with new data
        rows = [
            campaign(repo, "apply, random moment", APPLY,
                     [rng.uniform(0, duration * 1.1) for _ in range(args.random)]),
            campaign(repo, "apply, mid-save", APPLY, [None] * args.saving),
        ]
        edit(repo / "trip_features.py", *MONTH)
        rows.append(campaign(repo, "changes --refresh, mid-save", REFRESH, [None] * args.refresh))
        check = subprocess.run([REFRESH[0], "online", "--check"], cwd=repo, capture_output=True, text=True)
    print(f"{args.trips} trips; one apply took {duration:.1f} s; random moments in [0, {duration * 1.1:.1f}] s\n")
    print_table(rows)
    print(f"online --check after the last run: exit {check.returncode}: {check.stdout.strip()}")


if __name__ == "__main__":
    main()
