"""The Feast objects that `feast init` (feast 0.67.0, default template) generates.

Written out by hand for this repository so that the Hamilton variants can be compared with
it object for object. `feast apply` run in this folder registers everything defined here.
"""

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
    Project,
    PushSource,
    RequestSource,
)
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float32, Float64, Int64, Json, Map, String, Struct

# The project; its name must match `project:` in feature_store.yaml.
project = Project(name="default_feature_store", description="A project for driver statistics")

# The entity: the primary key that features are looked up by.
driver = Entity(name="driver", join_keys=["driver_id"])

# Hourly driver statistics, written by generate_data.py.
driver_stats_source = FileSource(
    name="driver_hourly_stats_source",
    path="data/driver_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

driver_stats_fv = FeatureView(
    name="driver_hourly_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[
        Field(name="conv_rate", dtype=Float32),
        Field(name="acc_rate", dtype=Float32),
        Field(name="avg_daily_trips", dtype=Int64, description="Average daily trips"),
        Field(
            name="driver_metadata",
            dtype=Map,
            description="Driver metadata as key-value pairs",
        ),
        Field(name="driver_config", dtype=Json, description="Driver configuration as JSON"),
        Field(
            name="driver_profile",
            dtype=Struct({"name": String, "age": String}),
            description="Driver profile as a typed struct",
        ),
    ],
    online=True,
    source=driver_stats_source,
    tags={"team": "driver_performance"},
    enable_validation=True,
    version="latest",
)

# Values only known at request time, e.g. sent with the HTTP request.
input_request = RequestSource(
    name="vals_to_add",
    schema=[
        Field(name="val_to_add", dtype=Int64),
        Field(name="val_to_add_2", dtype=Int64),
    ],
)


@on_demand_feature_view(
    sources=[driver_stats_fv, input_request],
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


# Feature services group the features one model version uses.
driver_activity_v1 = FeatureService(
    name="driver_activity_v1",
    features=[
        driver_stats_fv[["conv_rate"]],
        transformed_conv_rate,
    ],
    logging_config=LoggingConfig(destination=FileLoggingDestination(path="data")),
)
driver_activity_v2 = FeatureService(
    name="driver_activity_v2", features=[driver_stats_fv, transformed_conv_rate]
)

# A push source lets fresh rows be written straight to the online (and offline) store.
driver_stats_push_source = PushSource(
    name="driver_stats_push_source",
    batch_source=driver_stats_source,
)

# The same statistics, fed by the push source.
driver_stats_fresh_fv = FeatureView(
    name="driver_hourly_stats_fresh",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[
        Field(name="conv_rate", dtype=Float32),
        Field(name="acc_rate", dtype=Float32),
        Field(name="avg_daily_trips", dtype=Int64),
        Field(name="driver_metadata", dtype=Map),
        Field(name="driver_config", dtype=Json),
        Field(name="driver_profile", dtype=Struct({"name": String, "age": String})),
    ],
    online=True,
    source=driver_stats_push_source,
    tags={"team": "driver_performance"},
    version="latest",
)


@on_demand_feature_view(
    sources=[driver_stats_fresh_fv, input_request],
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


driver_activity_v3 = FeatureService(
    name="driver_activity_v3",
    features=[driver_stats_fresh_fv, transformed_conv_rate_fresh],
)

# Human labels, kept apart from the immutable feature rows.
driver_quality_labels_source = PushSource(
    name="driver_quality_labels_push",
    batch_source=FileSource(
        name="driver_quality_labels_batch",
        path="data/driver_quality_labels.parquet",
        timestamp_field="event_timestamp",
    ),
)

driver_quality_labels = LabelView(
    name="driver_quality_labels",
    entities=[driver],
    schema=[
        Field(name="is_reliable", dtype=Int64),
        Field(name="quality_score", dtype=Float32),
        Field(name="reviewer_notes", dtype=String),
        Field(name="labeler", dtype=String),
    ],
    source=driver_quality_labels_source,
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
