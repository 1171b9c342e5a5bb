"""The Feast objects, as Hamilton functions in the same DAG as the transforms that feed them.

The source depends on the saved feature table, so the lineage runs unbroken from a raw trip
column through the transforms to the feature view, the on-demand view and the feature service.
Field descriptions are the transforms' docstrings.
"""

import ast
import inspect
import textwrap
from datetime import timedelta

import pandas as pd

import trip_features
from trip_features import day_of_week, hour_of_day, is_weekend
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
from feast.types import Bool, Float64, Int64, UnixTimestamp

# The feature view's fields: the transform that computes each, and its Feast type.
DRIVER_TRIP_FIELDS = [
    (trip_features.day_of_week, Int64),
    (trip_features.is_weekend, Bool),
    (trip_features.month, Int64),
    (trip_features.hour_of_day, Int64),
    (trip_features.trip_dist_pct_rank_3h_all_drivers, Float64),
    (trip_features.driver_trip_dist_mean_3h, Float64),
    (trip_features.driver_trip_dist_max_3h, Float64),
    (trip_features.driver_trip_dist_min_3h, Float64),
    (trip_features.driver_trips_3h, Int64),
    (trip_features.driver_trip_dist_mean_24h, Float64),
    (trip_features.driver_trips_24h, Int64),
]


def _field(transform, dtype) -> Field:
    """A Feast field named after its transform and described by the transform's docstring."""
    description = inspect.getdoc(transform).splitlines()[0]
    return Field(name=transform.__name__, dtype=dtype, description=description)


def _trip_request_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """The on-demand transformation: calendar features of the request time and the requested
    distance against the driver's recent trips, by the same functions as the stored features."""
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


def _source_with(udf, *transforms) -> str:
    """The source text Feast stores for `udf`: the transforms it calls (without their Hamilton
    decorators), then the UDF itself.

    Feast rebuilds a UDF by executing its stored source with little more than pandas and numpy
    in scope, so the transforms travel with it: the feature server runs the same code as the
    offline pipeline without needing this folder on its import path.
    """
    parts = []
    for transform in transforms:
        tree = ast.parse(textwrap.dedent(inspect.getsource(transform)))
        tree.body[0].decorator_list = []
        parts.append(ast.unparse(tree))
    parts.append(inspect.getsource(udf))
    return "\n\n\n".join(parts)


def project(project_name: str) -> Project:
    """The Feast project; its name comes from feature_store.yaml."""
    return Project(name=project_name, description="Trip features computed with Hamilton")


def driver() -> Entity:
    """The driver entity, looked up by driver_id."""
    # With its type declared, Feast need not read the feature table to infer it, so plans and
    # `changes.py` work from the code alone.
    return Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)


def driver_trip_features_source(saved_driver_trip_features: dict) -> FileSource:
    """The saved feature table, read from wherever the saver wrote it."""
    return FileSource(
        name="driver_trip_features_source",
        path=saved_driver_trip_features["file_metadata"]["path"],
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )


def driver_trip_features_push_source(driver_trip_features_source: FileSource) -> PushSource:
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
        schema=[_field(transform, dtype) for transform, dtype in DRIVER_TRIP_FIELDS],
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
        # No field descriptions here: feast 0.67 checks these fields against ones inferred by
        # running the UDF, with descriptions compared too, so any description fails apply.
        schema=[
            Field(name="request_day_of_week", dtype=Int64),
            Field(name="request_is_weekend", dtype=Bool),
            Field(name="request_hour_of_day", dtype=Int64),
            Field(name="requested_dist_vs_driver_mean_3h", dtype=Float64),
        ],
        description=(
            "Day of week, weekend flag and hour (UTC) of the requested trip, computed by the same "
            "functions as the stored trip features; and the requested distance over the driver's "
            "mean trip distance in the trailing 3 hours."
        ),
        mode="pandas",
        udf=_trip_request_features,
        udf_string=_source_with(_trip_request_features, day_of_week, is_weekend, hour_of_day),
    )


def trip_rating_model_v1(
    driver_trip_stats: FeatureView, trip_request_features: OnDemandFeatureView
) -> FeatureService:
    """The features a rider-rating model uses: the driver's trip stats and the request's features."""
    return FeatureService(
        name="trip_rating_model_v1", features=[driver_trip_stats, trip_request_features]
    )
