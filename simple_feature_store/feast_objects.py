# This is an example feature definition file, with each Feast object returned by a Hamilton
# function: named for the object, it takes the objects and settings it depends on as arguments

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
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float32, Float64, Int64, Json, Map, String, Struct


# Define a project for the feature repo
def project(project_name: str) -> Project:
    return Project(name=project_name, description="A project for driver statistics")


# Define an entity for the driver. You can think of an entity as a primary key used to
# fetch features.
def driver() -> Entity:
    return Entity(name="driver", join_keys=["driver_id"])


# Read data from parquet files. Parquet is convenient for local development mode. For
# production, you can use your favorite DWH, such as BigQuery. See Feast documentation
# for more info.
def driver_hourly_stats_source(driver_stats_path: str) -> FileSource:
    return FileSource(
        name="driver_hourly_stats_source",
        path=driver_stats_path,
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )


# Our parquet files contain sample data that includes a driver_id column, timestamps and
# three feature column. Here we define a Feature View that will allow us to serve this
# data to our model online.
def driver_hourly_stats(
    driver: Entity, driver_hourly_stats_source: FileSource, driver_stats_ttl: timedelta
) -> FeatureView:
    return FeatureView(
        # The unique name of this feature view. Two feature views in a single
        # project cannot have the same name
        name="driver_hourly_stats",
        entities=[driver],
        ttl=driver_stats_ttl,
        # The list of features defined below act as a schema to both define features
        # for both materialization of features into a store, and are used as references
        # during retrieval for building a training dataset or serving features
        schema=[
            Field(name="conv_rate", dtype=Float32),
            Field(name="acc_rate", dtype=Float32),
            Field(name="avg_daily_trips", dtype=Int64, description="Average daily trips"),
            Field(
                name="driver_metadata",
                dtype=Map,
                description="Driver metadata as key-value pairs",
            ),
            Field(
                name="driver_config", dtype=Json, description="Driver configuration as JSON"
            ),
            Field(
                name="driver_profile",
                dtype=Struct({"name": String, "age": String}),
                description="Driver profile as a typed struct",
            ),
        ],
        online=True,
        source=driver_hourly_stats_source,
        # Tags are user defined key/value pairs that are attached to each
        # feature view
        tags={"team": "driver_performance"},
        enable_validation=True,
        version="latest",
    )


# Define a request data source which encodes features / information only
# available at request time (e.g. part of the user initiated HTTP request)
def vals_to_add() -> RequestSource:
    return RequestSource(
        name="vals_to_add",
        schema=[
            Field(name="val_to_add", dtype=Int64),
            Field(name="val_to_add_2", dtype=Int64),
        ],
    )


# Define an on demand feature view which can generate new features based on
# existing feature views and RequestSource features
def transformed_conv_rate(
    driver_hourly_stats: FeatureView, vals_to_add: RequestSource
) -> OnDemandFeatureView:
    @on_demand_feature_view(
        sources=[driver_hourly_stats, vals_to_add],
        schema=[
            Field(name="conv_rate_plus_val1", dtype=Float64),
            Field(name="conv_rate_plus_val2", dtype=Float64),
        ],
    )
    def transformed_conv_rate(inputs: pd.DataFrame) -> pd.DataFrame:
        df = pd.DataFrame()
        df["conv_rate_plus_val1"] = inputs["conv_rate"] + inputs["val_to_add"]
        df["conv_rate_plus_val2"] = inputs["conv_rate"] + inputs["val_to_add_2"]
        return df

    return transformed_conv_rate


# This groups features into a model version
def driver_activity_v1(
    driver_hourly_stats: FeatureView,
    transformed_conv_rate: OnDemandFeatureView,
    feature_logging_path: str,
) -> FeatureService:
    return FeatureService(
        name="driver_activity_v1",
        features=[
            driver_hourly_stats[["conv_rate"]],  # Sub-selects a feature from a feature view
            transformed_conv_rate,  # Selects all features from the feature view
        ],
        logging_config=LoggingConfig(
            destination=FileLoggingDestination(path=feature_logging_path)
        ),
    )


def driver_activity_v2(
    driver_hourly_stats: FeatureView, transformed_conv_rate: OnDemandFeatureView
) -> FeatureService:
    return FeatureService(
        name="driver_activity_v2", features=[driver_hourly_stats, transformed_conv_rate]
    )


# Defines a way to push data (to be available offline, online or both) into Feast.
def driver_stats_push_source(driver_hourly_stats_source: FileSource) -> PushSource:
    return PushSource(
        name="driver_stats_push_source",
        batch_source=driver_hourly_stats_source,
    )


# Defines a slightly modified version of the feature view from above, where the source
# has been changed to the push source. This allows fresh features to be directly pushed
# to the online store for this feature view.
def driver_hourly_stats_fresh(
    driver: Entity, driver_stats_push_source: PushSource, driver_stats_ttl: timedelta
) -> FeatureView:
    return FeatureView(
        name="driver_hourly_stats_fresh",
        entities=[driver],
        ttl=driver_stats_ttl,
        schema=[
            Field(name="conv_rate", dtype=Float32),
            Field(name="acc_rate", dtype=Float32),
            Field(name="avg_daily_trips", dtype=Int64),
            Field(name="driver_metadata", dtype=Map),
            Field(name="driver_config", dtype=Json),
            Field(name="driver_profile", dtype=Struct({"name": String, "age": String})),
        ],
        online=True,
        source=driver_stats_push_source,  # Changed from above
        tags={"team": "driver_performance"},
        version="latest",
    )


# Define an on demand feature view which can generate new features based on
# existing feature views and RequestSource features
def transformed_conv_rate_fresh(
    driver_hourly_stats_fresh: FeatureView, vals_to_add: RequestSource
) -> OnDemandFeatureView:
    @on_demand_feature_view(
        sources=[driver_hourly_stats_fresh, vals_to_add],  # relies on fresh version of FV
        schema=[
            Field(name="conv_rate_plus_val1", dtype=Float64),
            Field(name="conv_rate_plus_val2", dtype=Float64),
        ],
    )
    def transformed_conv_rate_fresh(inputs: pd.DataFrame) -> pd.DataFrame:
        df = pd.DataFrame()
        df["conv_rate_plus_val1"] = inputs["conv_rate"] + inputs["val_to_add"]
        df["conv_rate_plus_val2"] = inputs["conv_rate"] + inputs["val_to_add_2"]
        return df

    return transformed_conv_rate_fresh


def driver_activity_v3(
    driver_hourly_stats_fresh: FeatureView, transformed_conv_rate_fresh: OnDemandFeatureView
) -> FeatureService:
    return FeatureService(
        name="driver_activity_v3",
        features=[driver_hourly_stats_fresh, transformed_conv_rate_fresh],
    )


# --- Label Views ---
# Label views manage mutable human labels for training data, RLHF, and evaluation.
# They use PushSources so labels can be submitted from the UI or external tools.


def driver_quality_labels_push(driver_quality_labels_path: str) -> PushSource:
    return PushSource(
        name="driver_quality_labels_push",
        batch_source=FileSource(
            name="driver_quality_labels_batch",
            path=driver_quality_labels_path,
            timestamp_field="event_timestamp",
        ),
    )


def driver_quality_labels(driver: Entity, driver_quality_labels_push: PushSource) -> LabelView:
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
