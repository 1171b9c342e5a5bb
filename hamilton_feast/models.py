"""Models trained on a repo's features, tracked and registered with MLflow through Feast's own
integration (`feast.mlflow_integration.FeastMlflowClient`), each version tagged with the feature
service it was trained on, so that serving and the change check find the service from the model.

- `log_and_register`: one MLflow run (in the project's experiment) with Feast's record of the
  feature retrieval (the feature service, its views and features), the parameters, the metrics,
  the training questions (the entity frame, label included) and the model with Feast's
  `feast_features.json`; then a new version of the registered model, which Feast's client tags
  `feast.feature_service` (the tag Feast's resolver and UI read);
- `served_model`: a registered version (the latest, by default), its feature service resolved
  by Feast's resolver, which also checks that the service still holds the features trained on;
- `versions_using`: the registered versions trained on any of some feature services.

Where runs go: the `mlflow: tracking_uri` of feature_store.yaml, `MLFLOW_TRACKING_URI`, or else
a SQLite file in the repo's data/ folder, the artifacts beside it. The repo's `mlflow:` block is
not enabled on purpose: enabled, Feast would import MLflow into every process that reads features
(the feature server included) and log every retrieval made during a run; this module starts the
runs it means to log, with Feast's client. Feast 0.67's client sets the tracking store only
inside its own runs and its resolver reads versions by number, not by `@alias`: the store is set
here for MLflow's functions as well, and versions are chosen by number.
"""

import contextlib
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from feast import FeatureService, FeatureStore
from hamilton_feast.notices import MLFLOW_ARTIFACT_PATH_NOTICE, known_notices_hidden
from hamilton_feast.tree_predictor import row_predictor

SERVICE_TAG = "feast.feature_service"  # on a model version: the service it was trained on
VERSION = "MODEL_VERSION"  # a version to serve instead of the latest


class NoModel(ValueError):
    """No version of the model is registered."""


def input_matrix(rows: pd.DataFrame, inputs: list[str]) -> pd.DataFrame:
    """A model's input columns as numbers, in training and in serving alike: booleans as 0/1, a
    missing feature as NaN."""
    return rows[inputs].astype("float64")


def input_row(online: dict, inputs: list[str]) -> np.ndarray:
    """A model's input columns from one entity's online read (`to_dict()`), as input_matrix
    makes them: booleans as 0/1, a missing feature as NaN."""
    return np.array([online[name][0] for name in inputs], dtype=np.float64)


def version_asked() -> int | None:
    """The version MODEL_VERSION names, if set."""
    asked = os.environ.get(VERSION)
    if asked is None:
        return None
    if not asked.isdigit():
        raise ValueError(f"{VERSION} is {asked!r}; expected a version number")
    return int(asked)


def tracking_uri(store: FeatureStore) -> str:
    """The tracking store of this repo's runs: the `mlflow: tracking_uri` of feature_store.yaml,
    else MLFLOW_TRACKING_URI, else the repo's own file, data/mlflow.db. Written into this store's
    configuration only, never into the process environment, so that a process reading two repos
    (or starting another repo's server) keeps each repo's models apart."""
    if store.config.mlflow is None:  # Feast's MLflow client reads its settings from this block
        raise ValueError(f"the Feast configuration of {Path(store.repo_path)} in use has no `mlflow:` block: add "
                         "`mlflow: {enabled: false}` to it (runs are started by hamilton_feast.models)")
    configured = store.config.mlflow.get_tracking_uri()
    if configured:
        return configured
    store.config.mlflow.tracking_uri = f"sqlite:///{Path(store.repo_path).resolve() / 'data' / 'mlflow.db'}"
    return store.config.mlflow.tracking_uri


@contextlib.contextmanager
def _client(store: FeatureStore):
    """Feast's MLflow client on this repo's tracking store, for MLflow's own functions too
    (runs, load_model) while the block runs. MLflow's set_tracking_uri also writes
    MLFLOW_TRACKING_URI into the process environment, for child processes to inherit: it is put
    back as it was after the block, or another repo read next (or a server started from here)
    would read this repo's models."""
    from feast.mlflow_integration.client import FeastMlflowClient
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri(store))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar in a server's log
    try:
        yield FeastMlflowClient(store)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def _store_exists(store: FeatureStore) -> bool:
    """False when the tracking store is a SQLite file that does not exist yet (nothing logged)."""
    uri = tracking_uri(store)
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()


def _experiment(client, store: FeatureStore) -> str:
    """The project's experiment (Feast names it after the project), its artifacts in data/
    beside a file store (MLflow would put them under the working folder)."""
    mlflow = client.mlflow
    found = mlflow.get_experiment_by_name(store.project)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri(store).startswith("sqlite:///"):
        location = (Path(tracking_uri(store).removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return mlflow.create_experiment(store.project, artifact_location=location)


def log_and_register(store: FeatureStore, model, name: str, service: FeatureService, entity_df: pd.DataFrame,
                     inputs: pd.DataFrame, params: dict, metrics: dict, seconds: float,
                     trusted_types: list[str] = ()) -> dict:
    """Log one run and register its model as a new version of `name`; return the version's
    name, number, run and feature service. `inputs` are the model's input columns (an example of
    them is logged with the model), `seconds` how long the training set took, `trusted_types`
    the model's own classes that MLflow's serializer (skops) loads only when told to."""
    references = [f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features]
    with _client(store) as client:
        mlflow = client.mlflow
        with known_notices_hidden(), _without_log_line(MLFLOW_ARTIFACT_PATH_NOTICE), client.start_run(
                run_name=f"{name} on {service.name}", experiment_id=_experiment(client, store)) as run:
            client.log_feature_retrieval(references, len(entity_df), seconds, feature_service=service)
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            client.log_training_dataset(entity_df, dataset_name="training questions")
            client.log_model(model, "model", input_example=inputs.head(5),  # with feast_features.json
                             skops_trusted_types=list(trusted_types))
            logged = mlflow.last_logged_model()
        with known_notices_hidden():
            version = client.register_model(logged.model_uri, name)  # tagged with the run's feature service
    return {"name": name, "version": int(version.version), "run_id": run.info.run_id, "feature_service": service.name}


@contextlib.contextmanager
def _without_log_line(text: str):
    """MLflow's log lines containing `text` left out while the block runs."""
    def keep(record: logging.LogRecord) -> bool:
        return text not in record.getMessage()

    logger = logging.getLogger("mlflow")
    logger.addFilter(keep)
    for handler in logger.handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
        for handler in logger.handlers:
            handler.removeFilter(keep)


def served_model(store: FeatureStore, name: str, version: int | None = None) -> dict:
    """A registered version of `name` (the latest by default), loaded: the estimator, its
    one-row predictor (tree_predictor.row_predictor: compiled trees, checked against the
    estimator), its feature service (from the version's tag, checked against the features it
    was trained on), the version's number and when it was registered. NoModel when none is
    registered."""
    none = NoModel(f"no version of model {name!r} is registered in {tracking_uri(store)}: train it first "
                   "(python train.py)")
    if not _store_exists(store):  # asked of a file not there, MLflow would create an empty store
        raise none
    with _client(store) as client:
        versions = client.client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise none
        chosen = max(versions, key=lambda v: int(v.version)) if version is None else \
            next((v for v in versions if int(v.version) == version), None)
        if chosen is None:
            raise NoModel(f"model {name!r} has no version {version} in {tracking_uri(store)} (versions: "
                          f"{sorted(int(v.version) for v in versions)})")
        uri = f"models:/{name}/{chosen.version}"
        service = store.get_feature_service(client.resolve_features(uri))
        model = client.mlflow.sklearn.load_model(uri)
    return {"model": model, "predict": row_predictor(model), "service": service, "version": int(chosen.version),
            "registered_at": pd.Timestamp(chosen.creation_timestamp, unit="ms", tz="UTC"),
            "inputs": [f.name for p in service.feature_view_projections for f in p.features]}


NOT_CHECKED = "not checked: MLflow is not installed (pip install '.[model]')"


def versions_using(store: FeatureStore, services: list[str]) -> list[str] | None:
    """'model vN (service)' for every registered version trained on one of `services` ([] when
    the repo's own tracking store does not exist yet); None when MLflow is not installed, so
    that nothing can be said (NOT_CHECKED says so)."""
    if importlib.util.find_spec("mlflow") is None:
        return None
    if not _store_exists(store):
        return []
    with known_notices_hidden(), _client(store) as client:  # SQLAlchemy's notice on opening the store
        versions = client.client.search_model_versions()
    return sorted(f"{v.name} v{v.version} ({v.tags[SERVICE_TAG]})" for v in versions
                  if v.tags.get(SERVICE_TAG) in services)
