"""Trip features: calendar features of each trip and trailing-window statistics of trip distance.

Every function takes and returns columns aligned on the trips' shared index (event-time
order); the trailing windows are computed by hamilton_feast.windows, in linear time on every
core. A stored feature is declared once, by its function: `@tag(feast_view=...)` puts it in
that Feast view, its docstring's first line is its description and its @check_output data_type
its Feast type; the view's schema and the saved table follow from them. Windows are time-based
and trailing: "3h" at time t covers (t - 3h, t], the trip itself included. Calendar features
are in UTC.
"""

import numpy as np
import pandas as pd
from hamilton.function_modifiers import check_output, tag

from hamilton_feast import windows


# The calendar features the on-demand view also computes count whole days or hours since the
# epoch, so the same functions work on a column of trips and on one request's timestamp.
_EPOCH, _DAY, _HOUR = pd.Timestamp("1970-01-01", tz="UTC"), pd.Timedelta(days=1), pd.Timedelta(hours=1)


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.int64, range=(0, 6), importance="fail")
def day_of_week(event_timestamp: pd.Series) -> pd.Series:
    """Day of the week of the trip, UTC (Monday=0, Sunday=6)."""
    return ((event_timestamp - _EPOCH) // _DAY + 3) % 7  # 1970-01-01 was a Thursday


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
    return (event_timestamp - _EPOCH) // _HOUR % 24


@tag(feast_view="driver_trip_stats")
@check_output(data_type=np.float64, range=(0.0, 1.0), allow_nans=False, importance="fail")
def trip_dist_pct_rank_3h_all_drivers(trip_dist: pd.Series, event_timestamp: pd.Series) -> pd.Series:
    """Percentile rank (0-1] of the trip's distance among all drivers' trips in the trailing 3 hours."""
    return windows.trailing_pct_rank(trip_dist, event_timestamp, "3h")


def driver_trip_dist_3h(
    trip_dist: pd.Series, driver_id: pd.Series, event_timestamp: pd.Series
) -> pd.DataFrame:
    """Each driver's trip distance statistics over the trailing 3 hours (mean, max, min, count)."""
    return windows.trailing_stats(trip_dist, event_timestamp, "3h", by=driver_id)


def driver_trip_dist_24h(
    trip_dist: pd.Series, driver_id: pd.Series, event_timestamp: pd.Series
) -> pd.DataFrame:
    """Each driver's trip distance statistics over the trailing 24 hours (mean, count)."""
    return windows.trailing_stats(trip_dist, event_timestamp, "24h", by=driver_id, extremes=False)


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
