"""The feature table: the trip features side by side, saved where the Feast source reads them."""

import pandas as pd
from hamilton.function_modifiers import save_to, source


@save_to.parquet(path=source("driver_trip_features_path"), output_name_="saved_driver_trip_features")
def driver_trip_features(
    event_timestamp: pd.Series,
    created: pd.Series,
    driver_id: pd.Series,
    day_of_week: pd.Series,
    is_weekend: pd.Series,
    month: pd.Series,
    hour_of_day: pd.Series,
    trip_dist_pct_rank_3h_all_drivers: pd.Series,
    driver_trip_dist_mean_3h: pd.Series,
    driver_trip_dist_max_3h: pd.Series,
    driver_trip_dist_min_3h: pd.Series,
    driver_trips_3h: pd.Series,
    driver_trip_dist_mean_24h: pd.Series,
    driver_trips_24h: pd.Series,
) -> pd.DataFrame:
    """One row per trip: the driver's features as of that trip, keyed by driver_id and event time."""
    return pd.DataFrame(
        {
            "event_timestamp": event_timestamp,
            "created": created,
            "driver_id": driver_id,
            "day_of_week": day_of_week,
            "is_weekend": is_weekend,
            "month": month,
            "hour_of_day": hour_of_day,
            "trip_dist_pct_rank_3h_all_drivers": trip_dist_pct_rank_3h_all_drivers,
            "driver_trip_dist_mean_3h": driver_trip_dist_mean_3h,
            "driver_trip_dist_max_3h": driver_trip_dist_max_3h,
            "driver_trip_dist_min_3h": driver_trip_dist_min_3h,
            "driver_trips_3h": driver_trips_3h,
            "driver_trip_dist_mean_24h": driver_trip_dist_mean_24h,
            "driver_trips_24h": driver_trips_24h,
        }
    )
