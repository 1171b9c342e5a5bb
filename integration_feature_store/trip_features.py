"""Trip features: calendar features of each trip and trailing-window statistics of trip distance.

Every function takes and returns columns aligned on the trips' shared index (event-time
order). A stored feature is declared once, by its function: `@tag(feast_view=...)` puts it in
that Feast view, its docstring's first line is its description and its @check_output data_type
its Feast type; the view's schema and the saved table follow from them. Windows are time-based
and trailing: "3h" at time t covers (t - 3h, t], the trip itself included. Calendar features
are in UTC.
"""

import numpy as np
import pandas as pd
from hamilton.function_modifiers import check_output, tag


def _sliding_extreme(values: np.ndarray, start: np.ndarray, reduce) -> np.ndarray:
    """reduce (np.maximum or np.minimum) over values[start[i]..i] for every i, by doubling
    spans: level k holds reduce over values[j..j + 2**k - 1], and two overlapping spans cover
    any window."""
    index = np.arange(len(values))
    length = index - start + 1
    level_of = np.floor(np.log2(length)).astype(np.int64)
    result = np.empty_like(values)
    level = values
    for k in range(int(level_of.max()) + 1):
        if k > 0:
            half = 1 << (k - 1)
            level = level.copy()
            level[:-half] = reduce(level[:-half], level[half:])
        rows = np.flatnonzero(level_of == k)
        result[rows] = reduce(level[start[rows]], level[rows - (1 << k) + 1])
    return result


def _rolling_by_driver(
    trip_dist: pd.Series,
    driver_id: pd.Series,
    event_timestamp: pd.Series,
    window: str,
    extremes: bool = True,
) -> pd.DataFrame:
    """mean/count (and max/min) of each driver's trip distances over a trailing time window.

    Vectorized: the trips are ordered by driver (time order kept, as the input is in time
    order), each trip's window start is found by binary search on a (driver, time rank) key,
    sums come from a running total and extremes from _sliding_extreme.
    """
    order = np.argsort(driver_id.to_numpy(), kind="stable")
    drivers = driver_id.to_numpy()[order]
    nanos = event_timestamp.array.as_unit("ns").asi8[order]
    width = pd.Timedelta(window).value
    # A key increasing in (driver, time): driver rank, then the time's rank among all times
    # (ranks, not nanoseconds, so it cannot overflow). A trip's window starts at the first trip
    # of its driver whose time ranks at or after the first time later than t - window.
    driver_rank = np.concatenate([[0], np.cumsum(drivers[1:] != drivers[:-1])]).astype(np.int64)
    times = np.sort(nanos)
    stride = len(times) + 1
    key = driver_rank * stride + np.searchsorted(times, nanos)
    first_in_window = np.searchsorted(times, nanos - width, side="right")
    start = np.searchsorted(key, driver_rank * stride + first_in_window, side="left")

    values = trip_dist.to_numpy(dtype=np.float64)[order]
    index = np.arange(len(values))
    count = index - start + 1
    running = np.concatenate([[0.0], np.cumsum(values)])
    columns = {"mean": (running[index + 1] - running[start]) / count, "count": count}
    if extremes:
        columns["max"] = _sliding_extreme(values, start, np.maximum)
        columns["min"] = _sliding_extreme(values, start, np.minimum)
    stats = pd.DataFrame(columns)
    stats.index = trip_dist.index[order]
    return stats.reindex(trip_dist.index)


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.int64, range=(0, 6), importance="fail")
def day_of_week(event_timestamp: pd.Series) -> pd.Series:
    """Day of the week of the trip, UTC (Monday=0, Sunday=6)."""
    return event_timestamp.dt.dayofweek.astype("int64")


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.bool_, importance="fail")
def is_weekend(day_of_week: pd.Series) -> pd.Series:
    """Whether the trip was on a Saturday or Sunday, UTC."""
    return day_of_week >= 5


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.int64, range=(1, 12), importance="fail")
def month(event_timestamp: pd.Series) -> pd.Series:
    """Month of the trip, UTC (January=1)."""
    return event_timestamp.dt.month.astype("int64")


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.int64, range=(0, 23), importance="fail")
def hour_of_day(event_timestamp: pd.Series) -> pd.Series:
    """Hour of the day the trip started, UTC (0-23)."""
    return event_timestamp.dt.hour.astype("int64")


@tag(feast_view="driver_trip_stats")
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
    """Each driver's trip distance statistics over the trailing 24 hours (mean, count)."""
    return _rolling_by_driver(trip_dist, driver_id, event_timestamp, "24h", extremes=False)


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.float64, range=(0.0, 10_000.0), allow_nans=False, importance="fail")
def driver_trip_dist_mean_3h(driver_trip_dist_3h: pd.DataFrame) -> pd.Series:
    """Mean distance of the driver's trips in the trailing 3 hours."""
    return driver_trip_dist_3h["mean"]


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.float64, range=(0.0, 10_000.0), allow_nans=False, importance="fail")
def driver_trip_dist_max_3h(driver_trip_dist_3h: pd.DataFrame) -> pd.Series:
    """Longest of the driver's trips in the trailing 3 hours."""
    return driver_trip_dist_3h["max"]


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.float64, range=(0.0, 10_000.0), allow_nans=False, importance="fail")
def driver_trip_dist_min_3h(driver_trip_dist_3h: pd.DataFrame) -> pd.Series:
    """Shortest of the driver's trips in the trailing 3 hours."""
    return driver_trip_dist_3h["min"]


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.int64, range=(1, 10_000), importance="fail")
def driver_trips_3h(driver_trip_dist_3h: pd.DataFrame) -> pd.Series:
    """Number of trips the driver made in the trailing 3 hours."""
    return driver_trip_dist_3h["count"].astype("int64")


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.float64, range=(0.0, 10_000.0), allow_nans=False, importance="fail")
def driver_trip_dist_mean_24h(driver_trip_dist_24h: pd.DataFrame) -> pd.Series:
    """Mean distance of the driver's trips in the trailing 24 hours."""
    return driver_trip_dist_24h["mean"]


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.int64, range=(1, 100_000), importance="fail")
def driver_trips_24h(driver_trip_dist_24h: pd.DataFrame) -> pd.Series:
    """Number of trips the driver made in the trailing 24 hours."""
    return driver_trip_dist_24h["count"].astype("int64")
