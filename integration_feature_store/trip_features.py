"""Trip features: calendar features of each trip and trailing-window statistics of trip distance.

Every function takes and returns columns aligned on the trips' shared index (event-time
order). Each docstring's first line is the feature's description in Feast. Windows are
time-based and trailing: "3h" at time t covers (t - 3h, t], the trip itself included.
Calendar features are in UTC.
"""

import numpy as np
import pandas as pd
from hamilton.function_modifiers import check_output


def _rolling_by_driver(
    trip_dist: pd.Series, driver_id: pd.Series, event_timestamp: pd.Series, window: str
) -> pd.DataFrame:
    """mean/max/min/count of each driver's trip distances over a trailing time window."""
    frame = pd.DataFrame(
        {"driver_id": driver_id, "event_timestamp": event_timestamp, "trip_dist": trip_dist}
    )
    # Each driver's trips must be in time order for a time-based window; the input already is.
    stats = (
        frame.groupby("driver_id")
        .rolling(window, on="event_timestamp")["trip_dist"]
        .agg(["mean", "max", "min", "count"])
    )
    # The result lists the rows driver by driver (in driver_id order), each driver's in time
    # order: the order of a stable sort by driver_id. Put each row back at its trip's index.
    stats.index = driver_id.sort_values(kind="stable").index
    return stats.reindex(trip_dist.index)


@check_output(data_type=np.int64, range=(0, 6), importance="fail")
def day_of_week(event_timestamp: pd.Series) -> pd.Series:
    """Day of the week of the trip, UTC (Monday=0, Sunday=6)."""
    return event_timestamp.dt.dayofweek.astype("int64")


@check_output(data_type=np.bool_, importance="fail")
def is_weekend(day_of_week: pd.Series) -> pd.Series:
    """Whether the trip was on a Saturday or Sunday, UTC."""
    return day_of_week >= 5


@check_output(data_type=np.int64, range=(1, 12), importance="fail")
def month(event_timestamp: pd.Series) -> pd.Series:
    """Month of the trip, UTC (January=1)."""
    return event_timestamp.dt.month.astype("int64")


@check_output(data_type=np.int64, range=(0, 23), importance="fail")
def hour_of_day(event_timestamp: pd.Series) -> pd.Series:
    """Hour of the day the trip started, UTC (0-23)."""
    return event_timestamp.dt.hour.astype("int64")


@check_output(data_type=np.float64, range=(0.0, 1.0), allow_nans=False, importance="fail")
def trip_dist_pct_rank_3h_all_drivers(trip_dist: pd.Series, event_timestamp: pd.Series) -> pd.Series:
    """Percentile rank (0-1] of the trip's distance among all drivers' trips in the trailing 3 hours."""
    by_time = pd.Series(trip_dist.to_numpy(), index=pd.DatetimeIndex(event_timestamp))
    ranks = by_time.rolling("3h").rank(pct=True)
    return pd.Series(ranks.to_numpy(), index=trip_dist.index)


def driver_trip_dist_3h(
    trip_dist: pd.Series, driver_id: pd.Series, event_timestamp: pd.Series
) -> pd.DataFrame:
    """Each driver's trip distance statistics over the trailing 3 hours (mean, max, min, count)."""
    return _rolling_by_driver(trip_dist, driver_id, event_timestamp, "3h")


def driver_trip_dist_24h(
    trip_dist: pd.Series, driver_id: pd.Series, event_timestamp: pd.Series
) -> pd.DataFrame:
    """Each driver's trip distance statistics over the trailing 24 hours (mean, max, min, count)."""
    return _rolling_by_driver(trip_dist, driver_id, event_timestamp, "24h")


@check_output(data_type=np.float64, range=(0.0, 10_000.0), allow_nans=False, importance="fail")
def driver_trip_dist_mean_3h(driver_trip_dist_3h: pd.DataFrame) -> pd.Series:
    """Mean distance of the driver's trips in the trailing 3 hours."""
    return driver_trip_dist_3h["mean"]


@check_output(data_type=np.float64, range=(0.0, 10_000.0), allow_nans=False, importance="fail")
def driver_trip_dist_max_3h(driver_trip_dist_3h: pd.DataFrame) -> pd.Series:
    """Longest of the driver's trips in the trailing 3 hours."""
    return driver_trip_dist_3h["max"]


@check_output(data_type=np.float64, range=(0.0, 10_000.0), allow_nans=False, importance="fail")
def driver_trip_dist_min_3h(driver_trip_dist_3h: pd.DataFrame) -> pd.Series:
    """Shortest of the driver's trips in the trailing 3 hours."""
    return driver_trip_dist_3h["min"]


@check_output(data_type=np.int64, range=(1, 10_000), importance="fail")
def driver_trips_3h(driver_trip_dist_3h: pd.DataFrame) -> pd.Series:
    """Number of trips the driver made in the trailing 3 hours."""
    return driver_trip_dist_3h["count"].astype("int64")


@check_output(data_type=np.float64, range=(0.0, 10_000.0), allow_nans=False, importance="fail")
def driver_trip_dist_mean_24h(driver_trip_dist_24h: pd.DataFrame) -> pd.Series:
    """Mean distance of the driver's trips in the trailing 24 hours."""
    return driver_trip_dist_24h["mean"]


@check_output(data_type=np.int64, range=(1, 100_000), importance="fail")
def driver_trips_24h(driver_trip_dist_24h: pd.DataFrame) -> pd.Series:
    """Number of trips the driver made in the trailing 24 hours."""
    return driver_trip_dist_24h["count"].astype("int64")
