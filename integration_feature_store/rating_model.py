"""A model of the rating a rider gives a trip, on the features of `trip_rating_model_v1`, as
Hamilton nodes of the same DAG as the features: so the lineage runs from a raw column through
the features and the feature service to the model. `python train.py` asks for its nodes;
`python apply.py` never does (registering features does not retrain a model).

Each training question is a past trip asked *when it was requested*: the driver, the request's
time and distance, and the rating the rider gave at the end. The features join as of the
request, strictly before the trip's own row (whose event time is the trip's end), so a row holds
what the online store served at that moment. Joined at the trip's end instead, the trailing
windows would include the very trip being predicted (model.ipynb shows what that costs).

The split is by time, never at random (a random split trains on the future): train on the trips
requested before `evaluation_start`, evaluate on the last `evaluation_days` days, against two
baselines: the training period's mean rating, and each driver's mean rating before the trip.
"""

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance

from feast import FeatureService, FeatureStore
from hamilton_feast import models

RANDOM_STATE = 0
# The trees' own class, which MLflow's serializer (skops) loads only when told that it is
# trusted: the model is of this repo's making.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def entity_df(driver_id: pd.Series, requested_at: pd.Series, trip_dist: pd.Series, rider_rating: pd.Series) -> pd.DataFrame:
    """The model's training questions: each past trip at its request, with its distance and rating."""
    return pd.DataFrame({"driver_id": driver_id, "event_timestamp": requested_at, "requested_at": requested_at,
                         "requested_trip_dist": trip_dist, "rider_rating": rider_rating})


def features(trip_rating_model_v1: FeatureService) -> str:
    """The name of the feature service the model reads: offline to train, online to serve."""
    return trip_rating_model_v1.name


def model_inputs(trip_rating_model_v1: FeatureService) -> list[str]:
    """The model's input columns: every feature of its service, in the service's order."""
    return [f.name for p in trip_rating_model_v1.feature_view_projections for f in p.features]


def evaluation_start(requested_at: pd.Series, evaluation_days: int) -> pd.Timestamp:
    """Where the evaluation period starts: midnight UTC, `evaluation_days` days before the end
    of the last request's day."""
    return requested_at.max().floor("D") - pd.Timedelta(days=evaluation_days - 1)


def evaluated(training_set: pd.DataFrame, evaluation_start: pd.Timestamp) -> pd.Series:
    """Whether each training row is in the evaluation period (requested from its start on)."""
    return training_set["requested_at"] >= evaluation_start


def rating_model(training_set: pd.DataFrame, model_inputs: list[str], evaluated: pd.Series) -> HistGradientBoostingRegressor:
    """Gradient-boosted trees predicting the rider's rating from the service's features, fit on
    the trips requested before the evaluation period. A missing feature (a driver without recent
    trips) goes down the branch the training rows without it took."""
    earlier = training_set[~evaluated]
    model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=RANDOM_STATE)
    return model.fit(models.input_matrix(earlier, model_inputs), earlier["rider_rating"])


def driver_mean_rating_before(entity_df: pd.DataFrame, event_timestamp: pd.Series) -> pd.Series:
    """Each trip's driver's mean rating over their trips that ended before it was requested
    (NaN for a driver's first trip)."""
    ended = pd.DataFrame({"driver_id": entity_df["driver_id"], "ended": event_timestamp,
                          "rating": entity_df["rider_rating"]}).sort_values("ended", kind="stable")
    ended["ratings"] = ended.groupby("driver_id")["rating"].cumsum()
    ended["trips"] = ended.groupby("driver_id").cumcount() + 1
    asked = entity_df[["driver_id", "requested_at"]].reset_index(names="row").sort_values("requested_at", kind="stable")
    before = pd.merge_asof(asked, ended[["driver_id", "ended", "ratings", "trips"]], left_on="requested_at",
                           right_on="ended", by="driver_id", allow_exact_matches=False)
    return (before["ratings"] / before["trips"]).set_axis(before["row"]).sort_index().set_axis(entity_df.index)


def model_evaluation(training_set: pd.DataFrame, rating_model: HistGradientBoostingRegressor, model_inputs: list[str],
                     evaluated: pd.Series, driver_mean_rating_before: pd.Series) -> pd.DataFrame:
    """Mean absolute and root mean squared error over the evaluation period: the model, the
    training period's mean rating, and each driver's mean rating before the trip (the training
    mean for a driver's first trip)."""
    later, truth = training_set[evaluated], training_set.loc[evaluated, "rider_rating"]
    training_mean = training_set.loc[~evaluated, "rider_rating"].mean()
    predictions = {
        "model": rating_model.predict(models.input_matrix(later, model_inputs)),
        "training mean rating": np.full(len(later), training_mean),
        "driver mean rating before": driver_mean_rating_before[evaluated].fillna(training_mean).to_numpy(),
    }
    errors = {name: truth.to_numpy() - predicted for name, predicted in predictions.items()}
    return pd.DataFrame({
        "mae": {name: np.abs(error).mean() for name, error in errors.items()},
        "rmse": {name: np.sqrt((error ** 2).mean()) for name, error in errors.items()},
        "trips": {name: len(truth) for name in errors},
    })


def feature_importances(training_set: pd.DataFrame, rating_model: HistGradientBoostingRegressor,
                        model_inputs: list[str], evaluated: pd.Series) -> pd.Series:
    """How much the model's mean absolute error over the evaluation period grows when a feature
    is shuffled (the mean of 5 shuffles), largest first."""
    later = training_set[evaluated]
    found = permutation_importance(rating_model, models.input_matrix(later, model_inputs), later["rider_rating"], n_repeats=5,
                                   random_state=RANDOM_STATE, scoring="neg_mean_absolute_error")
    return pd.Series(found.importances_mean, index=model_inputs).sort_values(ascending=False)


def registered_model(feature_store: FeatureStore, rating_model: HistGradientBoostingRegressor, model_name: str,
                     trip_rating_model_v1: FeatureService, entity_df: pd.DataFrame, training_set: pd.DataFrame,
                     model_inputs: list[str], model_evaluation: pd.DataFrame, evaluation_start: pd.Timestamp) -> dict:
    """The model logged to MLflow with its parameters, metrics and training questions, and
    registered as a new version of `model_name`, tagged with its feature service."""
    metrics = {f"{kind}_{name.replace(' ', '_')}": float(value)
               for name, row in model_evaluation.iterrows() for kind, value in row[["mae", "rmse"]].items()}
    params = {**rating_model.get_params(), "evaluation_start": str(evaluation_start),
              "training_rows": int((training_set["requested_at"] < evaluation_start).sum())}
    return models.log_and_register(feature_store, rating_model, model_name, trip_rating_model_v1, entity_df,
                                   training_set[model_inputs].astype("float64"), params, metrics,
                                   seconds=training_set.attrs["retrieval_seconds"], trusted_types=TRUSTED_TYPES)
