"""The Feast objects, as Hamilton functions in the same DAG as the transforms that feed them.

The source reads the table the DAG saved (its path is what the saver returned), so the lineage
runs unbroken from a raw trip column through the transforms to the feature view, the on-demand
view and the feature service.
"""

from datetime import timedelta
from pathlib import Path

import pandas as pd
from hamilton.function_modifiers import config

import trip_features
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    Project,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.data_source import DataSource
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float64, UnixTimestamp
from hamilton_feast import feature_fields, udf_fields, udf_source
from trip_features import day_of_week, hour_of_day, is_weekend


def _request_time(requested_at) -> pd.Timestamp | None:
    """A request's time, zoned: JSON clients send epoch seconds, and a time without a zone is UTC."""
    if requested_at is None:
        return None
    if pd.api.types.is_number(requested_at):
        return pd.Timestamp(requested_at, unit="s", tz="UTC")
    requested_at = pd.Timestamp(requested_at)
    return requested_at.tz_localize("UTC") if requested_at.tzinfo is None else requested_at


def _trip_request_features(inputs: dict) -> dict:
    """The on-demand transformation, in Feast's python mode (a list per input, a list per
    output, no DataFrame on the request path): calendar features of the request time by the
    same functions as the stored features, and the requested distance against the driver's
    recent trips. The keys it returns are the on-demand view's fields."""
    requested_at = [_request_time(moment) for moment in inputs["requested_at"]]
    request_day_of_week = [None if moment is None else day_of_week(moment) for moment in requested_at]
    return {
        "request_day_of_week": request_day_of_week,
        "request_is_weekend": [None if day is None else is_weekend(day) for day in request_day_of_week],
        "request_hour_of_day": [None if moment is None else hour_of_day(moment) for moment in requested_at],
        "requested_dist_vs_driver_mean_3h": [
            None if distance is None or not mean else distance / mean  # no 3 h mean, or 0: no ratio
            for distance, mean in zip(inputs["requested_trip_dist"], inputs["driver_trip_dist_mean_3h"])
        ],
    }


def project(project_name: str) -> Project:
    """The Feast project; its name comes from feature_store.yaml."""
    return Project(name=project_name, description="Trip features computed with Hamilton")


def driver() -> Entity:
    """The driver entity, looked up by driver_id."""
    # With its type declared, Feast need not read the feature table to infer it, so plans and
    # `hamilton-feast changes` work from the code alone.
    return Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)


@config.when_not(feast_offline_store="spark")
def driver_trip_features_source__file(saved_driver_trip_features: dict) -> FileSource:
    """The saved feature table, read from wherever the saver wrote it."""
    return FileSource(
        name="driver_trip_features_source",
        path=saved_driver_trip_features["file_metadata"]["path"],
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )


@config.when(feast_offline_store="spark")
def driver_trip_features_source__spark(saved_driver_trip_features: dict) -> SparkSource:
    """The saved feature table, read by Spark from the folder of parquet files Spark wrote."""
    return SparkSource(
        name="driver_trip_features_source",
        path=saved_driver_trip_features["file_metadata"]["path"],
        file_format="parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )


def driver_trip_features_push_source(driver_trip_features_source: DataSource) -> PushSource:
    """Pushes fresh trip features to the stores; the file keeps the history."""
    return PushSource(
        name="driver_trip_features_push_source", batch_source=driver_trip_features_source
    )


def driver_trip_stats(
    driver: Entity,
    driver_trip_features_push_source: PushSource,
    driver_trip_stats_ttl: timedelta,
) -> FeatureView:
    """The driver's trip features as of their latest trip, offline and online."""
    return FeatureView(
        name="driver_trip_stats",
        entities=[driver],
        ttl=driver_trip_stats_ttl,
        # The transforms tagged @tag(feast_view="driver_trip_stats"), described by their docstrings.
        schema=feature_fields("driver_trip_stats", trip_features),
        online=True,
        source=driver_trip_features_push_source,
        tags={"team": "driver_performance", "computed_by": "hamilton"},
    )


def trip_request() -> RequestSource:
    """The trip being requested, known only at request time."""
    return RequestSource(
        name="trip_request",
        schema=[
            Field(name="requested_at", dtype=UnixTimestamp),
            Field(name="requested_trip_dist", dtype=Float64),
        ],
    )


def trip_request_features(
    driver_trip_stats: FeatureView, trip_request: RequestSource
) -> OnDemandFeatureView:
    """Features of the requested trip, computed at request time by the offline transforms."""
    return OnDemandFeatureView(
        name="trip_request_features",
        sources=[driver_trip_stats, trip_request],
        # The columns the UDF returns, typed by running it on sample inputs. (No descriptions:
        # feast 0.67 compares declared fields, descriptions included, with the inferred ones.)
        schema=udf_fields(_trip_request_features, [driver_trip_stats, trip_request], mode="python"),
        description=(
            "Day of week, weekend flag and hour (UTC) of the requested trip, computed by the same "
            "functions as the stored trip features; and the requested distance over the driver's "
            "mean trip distance in the trailing 3 hours."
        ),
        mode="python",
        udf=_trip_request_features,
        udf_string=udf_source(_trip_request_features, _request_time, day_of_week, is_weekend, hour_of_day),
    )


def trip_rating_model_v1(
    driver_trip_stats: FeatureView, trip_request_features: OnDemandFeatureView, serving_logs_path: Path
) -> FeatureService:
    """The features a rider-rating model uses: the driver's trip stats and the request's features."""
    return FeatureService(
        name="trip_rating_model_v1",
        features=[driver_trip_stats, trip_request_features],
        # Where the features served through this service are logged, as parquet files, for
        # `feast monitor run --source-type log` (see docs/monitoring.md).
        logging_config=LoggingConfig(destination=FileLoggingDestination(path=str(serving_logs_path))),
    )
