"""The rider-rating model over HTTP: POST /predict with a driver and a requested trip answers the
rating the model predicts, the model version that answered and how old the features it read were.

    python prediction_server.py [--host 127.0.0.1] [--port 8001]
    curl -s 127.0.0.1:8001/predict -H 'Content-Type: application/json' \\
         -d '{"driver_id": 1001, "requested_trip_dist": 4.2}'

At start it loads the latest registered version of settings.yaml's `model_name` (or the one
MODEL_VERSION names) and the feature service that version is tagged with: the service is read
from the model, not written here; the online features are read through it. `requested_at`
defaults to now. A driver the online store holds no features for is answered all the same, with
the features it lacked listed: the model sends a missing feature down the branch its training
rows without it took. A missing or mistyped field is a 422 naming it; no registered model, an
error line at start. What each request read is logged where the service's `logging_config` says
(settings.yaml's `serving_logs_path`), for `feast monitor run --source-type log`
(docs/monitoring.md).
"""

import argparse
import contextlib
from datetime import datetime, timezone

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

from feast import FeatureStore
from hamilton_feast import Repo, models, script
from hamilton_feast.serving_logs import ServedFeatureLog


class TripRequest(BaseModel):
    driver_id: int
    requested_trip_dist: float = Field(gt=0, description="the requested trip's distance, km")
    requested_at: datetime | None = Field(None, description="when the trip is requested (default: now; UTC without a zone)")


def app_for(store: FeatureStore, served: dict, name: str) -> FastAPI:
    """The app answering with the `served` model (see models.served_model) of `name`."""
    service, rating_of, inputs = served["service"], served["predict"], served["inputs"]
    views = {view.name for view in store.list_feature_views()}
    stored = [f.name for p in service.feature_view_projections if p.name in views for f in p.features]
    log = ServedFeatureLog(store, service) if service.logging_config else None

    @contextlib.asynccontextmanager
    async def serving_log_written(app: FastAPI):
        with log or contextlib.nullcontext():  # written in batches; the rest at shutdown
            yield

    app = FastAPI(title=f"{name} v{served['version']}", lifespan=serving_log_written)

    # async: answered on the event loop, without a hop to a worker thread per request. The read
    # blocks the loop for its duration, well under a millisecond on the local stores and Redis
    # (BENCHMARKS.md, "The model"); a slow online store would hold every request behind it.
    @app.post("/predict")
    async def predict(trip: TripRequest) -> dict:
        now = datetime.now(timezone.utc)
        row = {"driver_id": trip.driver_id, "requested_at": trip.requested_at or now,
               "requested_trip_dist": trip.requested_trip_dist}
        response = store.get_online_features(features=service, entity_rows=[row])
        if log is not None:
            log.record([row], response)
        online = response.to_dict(include_event_timestamps=True)
        stamps = [online[f"{feature}__ts"][0] for feature in stored if online[feature][0] is not None]
        return {
            "driver_id": trip.driver_id,
            "rating": rating_of(models.input_row(online, inputs)),
            "model": name, "version": served["version"], "feature_service": service.name,
            "features_age_seconds": now.timestamp() - max(stamps) if stamps else None,
            "missing_features": [feature for feature in inputs if online[feature][0] is None],
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    repo = Repo(__file__)
    store = FeatureStore(repo_path=str(repo.path))
    name = repo.inputs["model_name"]
    served = models.served_model(store, name, models.version_asked())
    print(f"Serving {name} version {served['version']} on feature service {served['service'].name} "
          f"({served['predict'].kind})")
    uvicorn.run(app_for(store, served, name), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    script.run(main, outcome="the model is not served")
