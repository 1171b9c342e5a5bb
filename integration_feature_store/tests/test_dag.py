"""The DAG of integration_feature_store, read from the code alone: lineage from raw columns to the
feature service, each stored feature declared once by its function, the saved table and the
view's schema derived from those declarations, and pictures that are current."""

import sys

import pytest
from this_repo import ON_DEMAND_VIEWS, REPO, VIEW

from feast.types import Bool, Float64, Int64
from hamilton_feast import drawing
from hamilton_feast.testing import copy_repo, edit, run

# Each stored feature's Feast type, as the repo means it (not as the code computes it).
FEAST_TYPES = {
    "day_of_week": Int64, "is_weekend": Bool, "month": Int64, "hour_of_day": Int64,
    "trip_dist_pct_rank_3h_all_drivers": Float64, "driver_trip_dist_mean_3h": Float64,
    "driver_trip_dist_max_3h": Float64, "driver_trip_dist_min_3h": Float64,
    "driver_trips_3h": Int64, "driver_trip_dist_mean_24h": Float64, "driver_trips_24h": Int64,
}


@pytest.fixture(scope="module")
def dr(repo):
    """The driver apply.py runs: the repo's modules, the saved table, the Feast operations."""
    return repo.driver()


def upstream(dr, name: str) -> set[str]:
    """The nodes `name` depends on, directly or not (Hamilton's answer includes `name` itself)."""
    return {node.name for node in dr.what_is_upstream_of(name)} - {name}


def test_feature_service_lineage_reaches_the_raw_columns(dr):
    reached = upstream(dr, "trip_rating_model_v1")
    assert {"event_timestamp", "created", "driver_id", "trip_dist", "raw_trips_path"} <= reached
    assert set(VIEW.fields) <= reached
    assert {"driver_trip_features", "saved_driver_trip_features", "driver_trip_features_source",
            "driver_trip_stats", "trip_request_features", "trip_request", "driver"} <= reached
    assert not {"rider_id", "rider_rating"} & reached, "the model must not see its label or rider ids"


def test_the_registry_and_the_online_store_are_downstream_of_the_raw_columns(dr):
    """One DAG from raw column to online store: the Feast operations are nodes too."""
    downstream = {node.name for node in dr.what_is_downstream_of("trip_dist")}
    assert {"driver_trip_stats", "feast_objects", "repo_contents", "registered", "materialized"} <= downstream


@pytest.mark.parametrize(
    "feast_object, expected_feast_upstream",
    [
        ("driver_trip_features_source", set()),
        ("driver_trip_features_push_source", {"driver_trip_features_source"}),
        ("driver_trip_stats", {"driver", "driver_trip_features_source", "driver_trip_features_push_source"}),
        ("trip_request_features", {"driver", "driver_trip_features_source", "driver_trip_features_push_source",
                                   "driver_trip_stats", "trip_request"}),
        ("project", set()),
    ],
)
def test_each_feast_object_depends_on_exactly_its_feast_objects(repo, dr, feast_object, expected_feast_upstream):
    assert upstream(dr, feast_object) & set(repo.feast_object_nodes) == expected_feast_upstream


def test_feast_objects_are_found_by_type_not_by_a_list(repo):
    assert repo.feast_object_nodes == sorted([
        "project", "driver", "driver_trip_features_source", "driver_trip_features_push_source",
        "driver_trip_stats", "trip_request", "trip_request_features", "trip_rating_model_v1",
    ])


def test_a_change_to_trip_dist_reaches_the_distance_features_only(dr):
    downstream = {node.name for node in dr.what_is_downstream_of("trip_dist")}
    assert {"trip_dist_pct_rank_3h_all_drivers", "driver_trip_dist_mean_3h", "driver_trips_24h",
            "driver_trip_stats", "trip_rating_model_v1"} <= downstream
    assert not {"day_of_week", "is_weekend", "month", "hour_of_day", "trip_request"} & downstream


def test_the_saved_table_holds_the_keys_then_the_views_fields(dr):
    variables = {v.name: v for v in dr.list_available_variables()}
    table_inputs = set(variables["driver_trip_features"].required_dependencies)
    assert table_inputs == {"event_timestamp", "created", "driver_id", *VIEW.fields}
    assert variables["saved_driver_trip_features"].tags.get("hamilton.data_saver") is True


def test_each_stored_field_is_declared_by_its_function(repo, modules):
    """Name = function, description = first docstring line, type from @check_output, view from @tag."""
    view = repo.feast_objects(overrides=repo.saved_tables_as_configured())["driver_trip_stats"]
    assert [field.name for field in view.features] == VIEW.fields
    for field in view.features:
        docstring = getattr(modules["trip_features"], field.name).__doc__
        assert field.description == docstring.strip().splitlines()[0]
        assert field.dtype == FEAST_TYPES[field.name], field.name


def test_the_on_demand_fields_are_the_columns_its_udf_returns(repo):
    view = repo.feast_objects(overrides=repo.saved_tables_as_configured())["trip_request_features"]
    assert [(f.name, f.dtype) for f in view.features] == list(zip(ON_DEMAND_VIEWS["trip_request_features"], [Int64, Bool, Int64, Float64]))


def test_renaming_a_feature_is_one_edit_in_one_file(tmp_path):
    """The function's name is the feature's name: the view's field and the saved column follow."""
    repo_dir = copy_repo(REPO, tmp_path)
    edit(repo_dir / "trip_features.py", "def month(", "def month_of_year(")
    script = (
        "from hamilton_feast import Repo\n"
        "repo = Repo('.')\n"
        "view = repo.feast_objects(overrides=repo.saved_tables_as_configured())['driver_trip_stats']\n"
        "print([f.name for f in view.features])\n"
        "print(sorted(next(v for v in repo.driver().list_available_variables()\n"
        "                  if v.name == 'driver_trip_features').required_dependencies))\n"
    )
    fields, columns = run([sys.executable, "-c", script], cwd=repo_dir).stdout.splitlines()[-2:]
    assert "'month_of_year'" in fields and "'month'" not in fields
    assert "'month_of_year'" in columns and "'month'" not in columns


def test_committed_pictures_are_current(repo):
    """dag and lineage (.dot and .png) are drawn from the code by `hamilton-feast draw`."""
    assert drawing.outdated(drawing.pictures(repo)) == []


def test_the_dag_picture_folds_hamiltons_helper_nodes(repo):
    """The checks, the loader's inner node and the saver's table are folded into their nodes,
    so the picture reads raw columns -> features -> table -> Feast objects -> registry."""
    source = (REPO / "dag.dot").read_text()
    assert "_validator" not in source and "_raw" not in source and ".loader" not in source
    assert "hamilton.enable_power_user_mode" not in source and "feast_object_tags" not in source
    for edge in ["trip_dist -> trip_dist_pct_rank_3h_all_drivers", "month -> driver_trip_features",
                 "driver_trip_features -> saved_driver_trip_features",
                 "saved_driver_trip_features -> driver_trip_features_source",
                 "repo_contents -> registered", "registered -> materialized"]:
        assert f"\t{edge}\n" in source, edge
    assert "month [label=<<b>month</b><br/><i>Series</i>> fillcolor=\"#b4d8e4\" peripheries=2" in source
