"""Write seeded raw trip events for this feature repo: the input of the Hamilton transforms.

One row per trip: when the rider requested it (`requested_at`), when it ended
(`event_timestamp`: the trip's row is an event of its end), when it reached the warehouse
(`created`), who drove and rode, how far it went, and the rider's rating (the label a model
learns). The trips end at `--end` (default: the current hour), so materialization to now finds
fresh features. Same arguments give the same file.

    python generate_data.py [--seed 42] [--end 2026-01-01T00:00Z] [--days 14] [--trips 20000] [--drivers 50]
    python generate_data.py --stream-days 1   # the last day's trips to data/stream_trips.parquet instead,
                                              # to replay onto the stream (docs/streaming.md)
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

REPO_DIR = Path(__file__).resolve().parent
FIRST_DRIVER_ID = 1001
STREAM_TRIPS = REPO_DIR / "data" / "stream_trips.parquet"  # trips for `hamilton-feast replay`


def raw_trips_path() -> Path:
    """Where the DAG reads the raw trips: its input raw_trips_path in settings.yaml."""
    settings = yaml.safe_load((REPO_DIR / "settings.yaml").read_text())
    return REPO_DIR / settings["inputs"]["raw_trips_path"]


def utc_hour(moment: str | pd.Timestamp | None = None) -> pd.Timestamp:
    """The start of the hour containing `moment` (default: now), timezone-aware UTC."""
    stamp = pd.Timestamp.now(tz="UTC") if moment is None else pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("h")


def raw_trips(
    end: pd.Timestamp, days: int = 14, trips: int = 20_000, drivers: int = 50, seed: int = 42
) -> pa.Table:
    """`trips` trips by `drivers` drivers in the `days` days before `end`, sorted by time.

    Busy drivers drive more, night trips (22:00-06:00 UTC) run longer, and a rider rates a
    trip lower the longer it ran relative to the driver's usual trip.
    """
    rng = np.random.default_rng(seed)
    span_us = days * 24 * 3600 * 1_000_000
    offset_us = rng.integers(0, span_us, trips)
    start = end - pd.Timedelta(days=days)
    event_timestamp = start.as_unit("us") + pd.to_timedelta(np.sort(offset_us), unit="us")
    hour = event_timestamp.hour.to_numpy()
    night = (hour < 6) | (hour >= 22)

    activity = rng.gamma(2.0, 1.0, drivers)
    driver_id = FIRST_DRIVER_ID + rng.choice(drivers, trips, p=activity / activity.sum())
    usual_km = rng.uniform(3.0, 12.0, drivers)[driver_id - FIRST_DRIVER_ID]
    trip_dist = rng.lognormal(np.log(usual_km), 0.5) * np.where(night, 1.6, 1.0)
    stretch = trip_dist / usual_km
    rider_rating = np.clip(np.round(5.2 - 0.8 * stretch + rng.normal(0, 0.6, trips)), 1, 5)

    delay = pd.to_timedelta(rng.integers(1, 120, trips), unit="s")
    # From the request to the end of the trip: the wait for the car, then about 2 minutes a km.
    wait_and_ride = pd.to_timedelta(rng.integers(120, 900, trips) + np.round(trip_dist * rng.uniform(90, 150, trips)), "s")
    utc = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "requested_at": pa.array(event_timestamp - wait_and_ride, utc),
            "event_timestamp": pa.array(event_timestamp, utc),
            "created": pa.array(event_timestamp + delay, utc),
            "driver_id": pa.array(driver_id, pa.int64()),
            "rider_id": pa.array(rng.integers(1, 100_000, trips), pa.int64()),
            "trip_dist": pa.array(np.round(trip_dist, 3), pa.float64()),
            "rider_rating": pa.array(rider_rating.astype("int64"), pa.int64()),
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--end", default=None, help="exclusive end time, UTC (default: now)")
    parser.add_argument("--days", type=int, default=14, help="days of history (default 14)")
    parser.add_argument("--trips", type=int, default=20_000, help="number of trips (default 20000)")
    parser.add_argument("--drivers", type=int, default=50, help="number of drivers (default 50)")
    parser.add_argument("--stream-days", type=int, default=0,
                        help=f"the trips of the last days go to {STREAM_TRIPS.relative_to(REPO_DIR)}, to stream (default 0)")
    args = parser.parse_args(argv)
    for name in ("days", "trips", "drivers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.stream_days < args.days:
        parser.error(f"--stream-days must be from 0 to --days - 1 ({args.days - 1}), got {args.stream_days}")
    end = utc_hour(args.end)
    table = raw_trips(end, args.days, args.trips, args.drivers, args.seed)
    path = raw_trips_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    streamed = pc.greater_equal(table["event_timestamp"], end - pd.Timedelta(days=args.stream_days))
    if args.stream_days:
        pq.write_table(table.filter(streamed), STREAM_TRIPS)
        table = table.filter(pc.invert(streamed))
        print(f"wrote {pq.read_metadata(STREAM_TRIPS).num_rows} trips of the last {args.stream_days} days to {STREAM_TRIPS}")
    pq.write_table(table, path)
    print(f"wrote {table.num_rows} trips to {path} (end {end.isoformat()})")


if __name__ == "__main__":
    main()
