"""Write seeded sample data for this feature repo: hourly driver statistics and quality labels.

The rows end at `--end` (default: the current hour), so `feast materialize-incremental` to now
finds fresh rows whenever the demo runs. Same seed and end give the same files.

    python generate_data.py [--seed 42] [--end 2026-01-01T00:00Z] [--days 15]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO_DIR = Path(__file__).resolve().parent
# Where the Feast template's sources read, relative to this folder (as `feast init` writes
# them); a Hamilton repo's settings.yaml names its own.
TEMPLATE_PATHS = {
    "driver_stats_path": "data/driver_stats.parquet",
    "driver_quality_labels_path": "data/driver_quality_labels.parquet",
}

DRIVER_IDS = np.arange(1001, 1006, dtype="int64")
VEHICLE_TYPES = np.array(["sedan", "suv", "truck", "van"])
ZONES = np.array(["north", "south", "east", "west"])
LABELERS = np.array(["alice", "bob", "carol"])


def utc_hour(moment: str | pd.Timestamp | None = None) -> pd.Timestamp:
    """The start of the hour containing `moment` (default: now), timezone-aware UTC."""
    stamp = pd.Timestamp.now(tz="UTC") if moment is None else pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("h")


def driver_stats(end: pd.Timestamp, days: int = 15, seed: int = 42) -> pa.Table:
    """One row per driver and hour for the `days` days before `end`.

    `created` is the event time plus an ingestion delay of 1 to 30 minutes.
    """
    rng = np.random.default_rng(seed)
    hours = pd.date_range(end=end - pd.Timedelta(hours=1), periods=days * 24, freq="h", tz="UTC")
    event_timestamp = np.tile(hours.values, len(DRIVER_IDS))
    driver_id = np.repeat(DRIVER_IDS, len(hours))
    n = len(driver_id)
    created = event_timestamp + rng.integers(1, 31, n).astype("timedelta64[m]")

    vehicle_type = VEHICLE_TYPES[rng.integers(0, len(VEHICLE_TYPES), n)]
    rating = np.round(rng.uniform(3.0, 5.0, n), 1).astype(str)
    max_distance_km = rng.integers(10, 150, n)
    first_zone = ZONES[rng.integers(0, len(ZONES), n)]
    second_zone = ZONES[rng.integers(0, len(ZONES), n)]
    driver_config = [
        json.dumps({"max_distance_km": int(km), "preferred_zones": [z1, z2]})
        for km, z1, z2 in zip(max_distance_km, first_zone, second_zone)
    ]
    name = np.char.add("driver_", driver_id.astype(str))
    age = rng.integers(21, 65, n).astype(str)

    utc = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "event_timestamp": pa.array(event_timestamp, utc),
            "driver_id": pa.array(driver_id, pa.int64()),
            "conv_rate": pa.array(rng.random(n, dtype="float32"), pa.float32()),
            "acc_rate": pa.array(rng.random(n, dtype="float32"), pa.float32()),
            "avg_daily_trips": pa.array(rng.integers(0, 1000, n), pa.int64()),
            "created": pa.array(created, utc),
            "driver_metadata": pa.StructArray.from_arrays(
                [pa.array(vehicle_type), pa.array(rating)], names=["vehicle_type", "rating"]
            ),
            "driver_config": pa.array(driver_config, pa.string()),
            "driver_profile": pa.StructArray.from_arrays(
                [pa.array(name), pa.array(age)], names=["name", "age"]
            ),
        }
    )


def driver_quality_labels(end: pd.Timestamp, days: int = 15, seed: int = 42) -> pa.Table:
    """One quality review per driver and day for the `days` days before `end`."""
    rng = np.random.default_rng(seed + 1)
    reviews = pd.date_range(end=end - pd.Timedelta(hours=1), periods=days, freq="D", tz="UTC")
    event_timestamp = np.tile(reviews.values, len(DRIVER_IDS))
    driver_id = np.repeat(DRIVER_IDS, len(reviews))
    n = len(driver_id)
    quality_score = np.round(rng.uniform(1.0, 5.0, n), 2).astype("float32")
    is_reliable = (quality_score >= 3.0).astype("int64")
    reviewer_notes = np.where(is_reliable == 1, "on time, polite", "late pickups")

    return pa.table(
        {
            "driver_id": pa.array(driver_id, pa.int64()),
            "is_reliable": pa.array(is_reliable, pa.int64()),
            "quality_score": pa.array(quality_score, pa.float32()),
            "reviewer_notes": pa.array(reviewer_notes, pa.string()),
            "labeler": pa.array(LABELERS[rng.integers(0, len(LABELERS), n)], pa.string()),
            "event_timestamp": pa.array(event_timestamp, pa.timestamp("us", tz="UTC")),
        }
    )


def output_paths() -> dict[str, str]:
    """Where this repo's sources read the tables: the inputs in settings.yaml if the folder has
    one, otherwise the template's paths."""
    settings = REPO_DIR / "settings.yaml"
    if not settings.is_file():
        return TEMPLATE_PATHS
    inputs = yaml.safe_load(settings.read_text())["inputs"]
    return {name: inputs[name] for name in TEMPLATE_PATHS}


def write_sample_data(end: pd.Timestamp, days: int = 15, seed: int = 42) -> list[Path]:
    """Write both tables below this folder and return their paths."""
    paths = output_paths()
    written = []
    for relative_path, table in [
        (paths["driver_stats_path"], driver_stats(end, days, seed)),
        (paths["driver_quality_labels_path"], driver_quality_labels(end, days, seed)),
    ]:
        path = REPO_DIR / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--end", default=None, help="exclusive end time, UTC (default: now)")
    parser.add_argument("--days", type=int, default=15, help="days of history (default 15)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error(f"--days must be at least 1, got {args.days}")
    end = utc_hour(args.end)
    for path in write_sample_data(end, args.days, args.seed):
        print(f"wrote {pq.read_metadata(path).num_rows} rows to {path} (end {end.isoformat()})")


if __name__ == "__main__":
    main()
