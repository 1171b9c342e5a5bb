"""The Feast objects of the default repo, one Hamilton function each.

A function is named for the object it returns (and the object keeps the default repo's name);
its arguments are the objects and settings it depends on, so the DAG is Feast's object graph.
"""

import inspect
from datetime import timedelta

import pandas as pd

from feast import (
    ConflictPolicy,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    LabelView,
    OnDemandFeatureView,
    Project,
    PushSource,
    RequestSource,
)
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.types import Float32, Float64, Int64, Json, Map, String, Struct

DRIVER_STATS_SCHEMA = [
    Field(name="conv_rate", dtype=Float32),
    Field(name="acc_rate", dtype=Float32),
    Field(name="avg_daily_trips", dtype=Int64, description="Average daily trips"),
    Field(name="driver_metadata", dtype=Map, description="Driver metadata as key-value pairs"),
    Field(name="driver_config", dtype=Json, description="Driver configuration as JSON"),
    Field(
        name="driver_profile",
        dtype=Struct({"name": String, "age": String}),
        description="Driver profile as a typed struct",
    ),
]

CONV_RATE_PLUS_VALS_SCHEMA = [
    Field(name="conv_rate_plus_val1", dtype=Float64),
    Field(name="conv_rate_plus_val2", dtype=Float64),
]


def _conv_rate_plus_vals(inputs: pd.DataFrame) -> pd.DataFrame:
    """The on-demand transformation: conv_rate plus each request value.

    Private (leading underscore), so Hamilton does not make it a node. Feast stores its
    source text in the registry and rebuilds the function from that when serving.
    """
    df = pd.DataFrame()
    df["conv_rate_plus_val1"] = inputs["conv_rate"] + inputs["val_to_add"]
    df["conv_rate_plus_val2"] = inputs["conv_rate"] + inputs["val_to_add_2"]
    return df


def project(project_name: str) -> Project:
    """The Feast project; its name comes from feature_store.yaml."""
    return Project(name=project_name, description="A project for driver statistics")


def driver() -> Entity:
    """The driver entity, looked up by driver_id."""
    return Entity(name="driver", join_keys=["driver_id"])


def driver_hourly_stats_source(driver_stats_path: str) -> FileSource:
    """Hourly driver statistics in a parquet file."""
    return FileSource(
        name="driver_hourly_stats_source",
        path=driver_stats_path,
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )


def driver_hourly_stats(
    driver: Entity, driver_hourly_stats_source: FileSource, driver_stats_ttl: timedelta
) -> FeatureView:
    """Driver statistics served online, read from the batch source."""
    return FeatureView(
        name="driver_hourly_stats",
        entities=[driver],
        ttl=driver_stats_ttl,
        schema=list(DRIVER_STATS_SCHEMA),
        online=True,
        source=driver_hourly_stats_source,
        tags={"team": "driver_performance"},
        enable_validation=True,
        version="latest",
    )


def vals_to_add() -> RequestSource:
    """Values only known at request time, sent with each online request."""
    return RequestSource(
        name="vals_to_add",
        schema=[
            Field(name="val_to_add", dtype=Int64),
            Field(name="val_to_add_2", dtype=Int64),
        ],
    )


def transformed_conv_rate(
    driver_hourly_stats: FeatureView, vals_to_add: RequestSource
) -> OnDemandFeatureView:
    """conv_rate plus the request values, computed at request time."""
    return OnDemandFeatureView(
        name="transformed_conv_rate",
        sources=[driver_hourly_stats, vals_to_add],
        schema=list(CONV_RATE_PLUS_VALS_SCHEMA),
        mode="pandas",
        udf=_conv_rate_plus_vals,
        udf_string=inspect.getsource(_conv_rate_plus_vals),
    )


def driver_activity_v1(
    driver_hourly_stats: FeatureView,
    transformed_conv_rate: OnDemandFeatureView,
    feature_logging_path: str,
) -> FeatureService:
    """Model v1: conv_rate and the on-demand features, with served features logged."""
    return FeatureService(
        name="driver_activity_v1",
        features=[driver_hourly_stats[["conv_rate"]], transformed_conv_rate],
        logging_config=LoggingConfig(
            destination=FileLoggingDestination(path=feature_logging_path)
        ),
    )


def driver_activity_v2(
    driver_hourly_stats: FeatureView, transformed_conv_rate: OnDemandFeatureView
) -> FeatureService:
    """Model v2: all driver statistics and the on-demand features."""
    return FeatureService(
        name="driver_activity_v2", features=[driver_hourly_stats, transformed_conv_rate]
    )


def driver_stats_push_source(driver_hourly_stats_source: FileSource) -> PushSource:
    """Pushes fresh driver statistics to the stores; the batch source keeps the history."""
    return PushSource(name="driver_stats_push_source", batch_source=driver_hourly_stats_source)


def driver_hourly_stats_fresh(
    driver: Entity, driver_stats_push_source: PushSource, driver_stats_ttl: timedelta
) -> FeatureView:
    """The driver statistics again, fed by the push source."""
    return FeatureView(
        name="driver_hourly_stats_fresh",
        entities=[driver],
        ttl=driver_stats_ttl,
        schema=[Field(name=field.name, dtype=field.dtype) for field in DRIVER_STATS_SCHEMA],
        online=True,
        source=driver_stats_push_source,
        tags={"team": "driver_performance"},
        version="latest",
    )


def transformed_conv_rate_fresh(
    driver_hourly_stats_fresh: FeatureView, vals_to_add: RequestSource
) -> OnDemandFeatureView:
    """conv_rate plus the request values, from the freshest pushed statistics."""
    return OnDemandFeatureView(
        name="transformed_conv_rate_fresh",
        sources=[driver_hourly_stats_fresh, vals_to_add],
        schema=list(CONV_RATE_PLUS_VALS_SCHEMA),
        mode="pandas",
        udf=_conv_rate_plus_vals,
        udf_string=inspect.getsource(_conv_rate_plus_vals),
    )


def driver_activity_v3(
    driver_hourly_stats_fresh: FeatureView, transformed_conv_rate_fresh: OnDemandFeatureView
) -> FeatureService:
    """Model v3: the fresh statistics and their on-demand features."""
    return FeatureService(
        name="driver_activity_v3",
        features=[driver_hourly_stats_fresh, transformed_conv_rate_fresh],
    )


def driver_quality_labels_batch(driver_quality_labels_path: str) -> FileSource:
    """Stored history of driver quality labels."""
    return FileSource(
        name="driver_quality_labels_batch",
        path=driver_quality_labels_path,
        timestamp_field="event_timestamp",
    )


def driver_quality_labels_push(driver_quality_labels_batch: FileSource) -> PushSource:
    """Receives new labels from reviewers and labeling tools."""
    return PushSource(name="driver_quality_labels_push", batch_source=driver_quality_labels_batch)


def driver_quality_labels(driver: Entity, driver_quality_labels_push: PushSource) -> LabelView:
    """Human quality labels for drivers, for training and evaluation."""
    return LabelView(
        name="driver_quality_labels",
        entities=[driver],
        schema=[
            Field(name="is_reliable", dtype=Int64),
            Field(name="quality_score", dtype=Float32),
            Field(name="reviewer_notes", dtype=String),
            Field(name="labeler", dtype=String),
        ],
        source=driver_quality_labels_push,
        labeler_field="labeler",
        conflict_policy=ConflictPolicy.LAST_WRITE_WINS,
        description="Human quality labels for drivers - used for model training and evaluation",
        tags={
            "feast.io/labeling-method": "table",
            "feast.io/field-role:is_reliable": "label",
            "feast.io/field-role:quality_score": "label",
            "feast.io/field-role:reviewer_notes": "metadata",
            "feast.io/label-values:is_reliable": "1 0",
            "feast.io/label-widget:is_reliable": "binary",
            "feast.io/label-widget:quality_score": "number",
            "feast.io/label-widget:reviewer_notes": "text",
        },
    )
