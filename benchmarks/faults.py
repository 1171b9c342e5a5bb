"""Fault injection on the integration repo: SIGKILL its apply and refresh many times, at random
moments and while the feature table is being saved, and count what each kill left. Prints one
table (docs/faults.md, "When things go wrong", cites it).

    python benchmarks/faults.py                 # 20 random kills, 10 mid-save, 5 mid-refresh
    python benchmarks/faults.py --random 50 --trips 500000

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=20, help="kills at random moments of an apply")
    parser.add_argument("--saving", type=int, default=10, help="kills while the table is saved")
    parser.add_argument("--refresh", type=int, default=5, help="kills while a refresh saves the table")
    parser.add_argument("--trips", default="200000")
    args = parser.parse_args()
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
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")
    print(f"online --check after the last run: exit {check.returncode}: {check.stdout.strip()}")


if __name__ == "__main__":
    main()
