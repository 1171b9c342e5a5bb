"""retrieval.ipynb and model.ipynb run top to bottom in a fresh copy and produce values checked
here against independent computations."""

import json

import nbformat
import pandas as pd
from nbclient import NotebookClient
from this_repo import MODEL_DATA, RAW_DATA, REPO, applied_copy

from hamilton_feast.testing import copy_repo, generate_data


def test_retrieval_notebook_runs_top_to_bottom_and_produces_the_expected_values(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir)
    notebook = nbformat.read(repo_dir / "retrieval.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook with its outputs cleared"
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_dir)}}
    ).execute()

    summary_cell = next(c for c in notebook.cells if "summary" in c.metadata.get("tags", []))
    summary = json.loads(summary_cell.outputs[0]["text"])
    assert summary["training_rows"] == summary["entity_rows"] == 2000
    assert summary["training_labels_in_order"] is True
    assert summary["label_present"] == 2000
    # Asked at the request, a trip has features when its driver's previous trip ended in the TTL.
    assert 0 < summary["features_present"] == summary["rows_with_a_trip_ended_in_the_ttl"] <= 2000
    assert summary["odfv_skew_rows"] == 0
    assert summary["raw_columns_upstream"] == ["created", "driver_id", "event_timestamp", "trip_dist"]
    assert "trip_rating_model_v1" in summary["feast_objects_downstream_of_trip_dist"]
    assert summary["online_driver_ids"] == [1001, 1002]

    # Independently of Feast and Hamilton: each driver's trips in the 24 h up to its last trip.
    raw = pd.read_parquet(repo_dir / RAW_DATA)
    for driver_id, served in zip([1001, 1002], summary["online_trips_24h"]):
        times = raw.loc[raw.driver_id == driver_id, "event_timestamp"]
        assert served == int((times > times.max() - pd.Timedelta(hours=24)).sum())


def test_model_notebook_trains_shows_the_leak_registers_and_serves(tmp_path):
    repo_dir = applied_copy(tmp_path, *MODEL_DATA, apply_args=["--materialize"])
    notebook = nbformat.read(repo_dir / "model.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook with its outputs cleared"
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(repo_dir)}}
    ).execute()
    summary_cell = next(c for c in notebook.cells if "summary" in c.metadata.get("tags", []))
    summary = json.loads(summary_cell.outputs[0]["text"])
    assert summary["model_mae"] < 0.85 * min(summary["training_mean_mae"], summary["driver_mean_mae"])
    # The leak: offline the leaky model looks as good as the right one (within 1 %; slightly
    # better or worse with the hour the data ends at), served it is worse than the right model
    # and than its own offline score.
    assert summary["leaky_offline_mae"] < 1.01 * summary["model_mae"]
    assert summary["model_mae"] < summary["leaky_served_mae"] and summary["leaky_offline_mae"] < summary["leaky_served_mae"]
    trips = summary["evaluated_trips"] + summary["trained_trips"]
    assert summary["rows_differing_between_the_joins"] > 0.5 * trips
    assert summary["registered"] == {"name": "trip_rating_model", "version": 1, "feature_service": "trip_rating_model_v1"}
    assert summary["served_version"] == 1 and summary["online_offline_prediction_gap"] < 1e-9
