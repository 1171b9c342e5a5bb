"""The Feast objects, as Hamilton functions in the same DAG as the transforms that feed them.

The source reads the table the DAG saved (its path is what the saver returned), so the lineage
runs unbroken from a raw trip column through the transforms to the feature view, the on-demand
view and the feature service.
"""

from datetime import timedelta

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
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float64, UnixTimestamp
from hamilton_feast import feature_fields, udf_fields, udf_source
from trip_features import day_of_week, hour_of_day, is_weekend


def _trip_request_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """The on-demand transformation: calendar features of the request time and the requested
    distance against the driver's recent trips, by the same functions as the stored features.
    The columns it returns are the on-demand view's fields."""
    requested_at = inputs["requested_at"]
    if pd.api.types.is_numeric_dtype(requested_at):  # JSON clients send epoch seconds
        requested_at = pd.to_datetime(requested_at, unit="s", utc=True)
    else:
        requested_at = pd.to_datetime(requested_at, utc=True)
    request_day_of_week = day_of_week(requested_at)
    return pd.DataFrame(
        {
            "request_day_of_week": request_day_of_week,
            "request_is_weekend": is_weekend(request_day_of_week),
            "request_hour_of_day": hour_of_day(requested_at),
            "requested_dist_vs_driver_mean_3h": (
                inputs["requested_trip_dist"] / inputs["driver_trip_dist_mean_3h"]
            ),
        }
    )


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
        schema=udf_fields(_trip_request_features, [driver_trip_stats, trip_request]),
        description=(
            "Day of week, weekend flag and hour (UTC) of the requested trip, computed by the same "
            "functions as the stored trip features; and the requested distance over the driver's "
            "mean trip distance in the trailing 3 hours."
        ),
        mode="pandas",
        udf=_trip_request_features,
        udf_string=udf_source(_trip_request_features, day_of_week, is_weekend, hour_of_day),
    )


def trip_rating_model_v1(
    driver_trip_stats: FeatureView, trip_request_features: OnDemandFeatureView
) -> FeatureService:
    """The features a rider-rating model uses: the driver's trip stats and the request's features."""
    return FeatureService(
        name="trip_rating_model_v1", features=[driver_trip_stats, trip_request_features]
    )
