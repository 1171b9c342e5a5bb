"""This repo end to end, for each feature view and service it defines (their names read from the
repo, see this_repo.py): raw data -> Hamilton -> saved table -> Feast -> training sets and serving."""

import sys

import numpy as np
import pandas as pd
import pytest
from this_repo import CODE_EDIT, REPO, SERVICES, SMALL, VIEWS, applied_copy, entity_rows, saved_table

from feast import FeatureStore
from feast.data_source import PushMode
from hamilton_feast import training_sets
from hamilton_feast.testing import copy_repo, edit, file_hashes, generate_data, registry_objects, run

EACH_VIEW = pytest.mark.parametrize("view", VIEWS, ids=[view.name for view in VIEWS])


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """A copy with fresh raw data, registered by `python apply.py`; and its code's hashes."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("integration"))
    hashes = file_hashes(repo_dir)
    generate_data(repo_dir, *SMALL)
    run([sys.executable, "apply.py"], cwd=repo_dir)
    return repo_dir, hashes


def one_row_per_entity_and_time(table, view, n: int, seed: int) -> pd.DataFrame:
    """`n` saved rows whose (entity, time) no other row shares: "the latest row at that time" is
    the row itself."""
    unique = table.drop_duplicates([*view.keys, view.timestamp], keep=False)
    return unique.sample(min(n, len(unique)), random_state=seed)


@EACH_VIEW
def test_the_saved_table_holds_the_times_keys_and_fields_in_utc_and_time_order(applied, view):
    table = saved_table(applied[0], view)
    assert list(table.columns) == [view.timestamp, view.created, *view.keys, *view.fields]
    assert str(table[view.timestamp].dtype) == "datetime64[us, UTC]"
    assert table[view.timestamp].is_monotonic_increasing
    assert len(table) > 100


@EACH_VIEW
def test_historical_features_are_the_saved_rows(applied, view):
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    rows = one_row_per_entity_and_time(saved_table(repo_dir, view), view, 500, seed=3)
    actual = store.get_historical_features(
        entity_df=entity_rows(rows, view), features=[f"{view.name}:{f}" for f in view.fields]).to_df()
    assert len(actual) == len(rows) > 100
    expected = rows.rename(columns={view.timestamp: "event_timestamp"})
    merged = actual.merge(expected, on=[*view.keys, "event_timestamp"], suffixes=("", "_saved"), validate="1:1")
    assert len(merged) == len(rows)
    for field in view.fields:
        np.testing.assert_array_equal(merged[field].to_numpy(), merged[f"{field}_saved"].to_numpy(), field)


@pytest.mark.parametrize("service", SERVICES)
def test_the_fast_training_set_path_equals_feasts_answer_for_the_whole_service(applied, service):
    """Moments of saved rows, between them, and before any: the fast path and Feast's store
    agree on every feature of the service, on-demand ones included."""
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    view = VIEWS[0]
    entity_df = entity_rows(saved_table(repo_dir, view).sample(400, random_state=6), view)
    entity_df.loc[::3, "event_timestamp"] -= pd.Timedelta(minutes=37)
    entity_df.loc[::7, "event_timestamp"] -= pd.Timedelta(days=30)
    service = store.get_feature_service(service)
    by_feast = training_sets.get_training_set_from_feast(store, entity_df, service)
    fast = training_sets.get_training_set(store, entity_df, service)
    names = [f.name for p in service.feature_view_projections for f in p.features]
    assert len(fast) == len(by_feast) == 400
    assert by_feast[names].isna().any(axis=1).sum() > 0, "rows before any data must have no features"
    for name in names:
        np.testing.assert_array_equal(
            fast[name].astype("float64").to_numpy(), by_feast[name].astype("float64").to_numpy(), name)


@EACH_VIEW
def test_online_features_are_each_entitys_latest_saved_row(applied, view):
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    now = pd.Timestamp.now(tz="UTC")
    store.materialize_incremental(end_date=now.to_pydatetime())
    table = saved_table(repo_dir, view)
    latest = table[table[view.timestamp] <= now].sort_values([view.timestamp, view.created])
    latest = latest.groupby(view.keys).last()
    # Only entities whose last row is within the view's TTL are served.
    ttl = store.get_feature_view(view.name).ttl
    fresh = latest[latest[view.timestamp] > now - ttl].index[:5].tolist() if ttl else latest.index[:5].tolist()
    assert len(fresh) == 5
    served = store.get_online_features(
        features=[f"{view.name}:{f}" for f in view.fields],
        entity_rows=[dict(zip(view.keys, key if isinstance(key, tuple) else (key,))) for key in fresh],
    ).to_df().set_index(view.keys)
    for field in view.fields:
        np.testing.assert_array_equal(served.loc[fresh, field].to_numpy(), latest.loc[fresh, field].to_numpy(), field)


@pytest.mark.parametrize("view", [v for v in VIEWS if v.push_source], ids=lambda v: v.name)
def test_a_pushed_row_is_served(applied, view):
    repo_dir, _ = applied
    store = FeatureStore(repo_path=str(repo_dir))
    now = pd.Timestamp.now(tz="UTC").floor("us")
    table = saved_table(repo_dir, view)
    field = next(f for f in view.fields if pd.api.types.is_integer_dtype(table[f]))
    row = table.iloc[[-1]].assign(**{view.timestamp: now, view.created: now, field: 777})
    store.push(view.push_source, row, to=PushMode.ONLINE)
    key = dict(zip(view.keys, row[view.keys].iloc[0].tolist()))
    served = store.get_online_features(features=[f"{view.name}:{field}"], entity_rows=[key]).to_dict()
    assert served[field] == [777]


def test_the_whole_lifecycle_leaves_the_repo_code_unchanged(applied):
    repo_dir, hashes_of_the_repo = applied
    assert file_hashes(repo_dir) == hashes_of_the_repo


def test_the_apply_script_is_short_and_builds_the_driver_in_plain_sight():
    source = (REPO / "apply.py").read_text()
    assert len(source.splitlines()) <= 40
    assert "driver.Builder()" in source and ".build()" in source and "dr.execute(" in source


# --- plans and Feast's own command line, each on its own copy (no test depends on another) ---


def test_a_plan_right_after_apply_shows_no_changes_by_either_path(tmp_path):
    repo_dir = applied_copy(tmp_path, *SMALL)
    for command in ([sys.executable, "apply.py", "--plan"], ["feast", "plan"]):
        output = run(command, cwd=repo_dir).stdout
        assert "No changes to registry" in output and "No changes to infrastructure" in output, command


def test_after_materialize_the_plan_says_only_registry_metadata_changed(tmp_path):
    """A Feast 0.67 quirk docs/correctness.md names: materializing changes the stored view (its intervals), and Feast's
    next plan shows it as Updated, in many lines of protobuf. The plan here says so in one line
    per view; applying again is harmless, and the full diff is behind --full-diff."""
    repo_dir = applied_copy(tmp_path, *SMALL, apply_args=["--materialize"])
    output = run([sys.executable, "apply.py", "--plan"], cwd=repo_dir).stdout
    for view in VIEWS:
        assert f"Updated feature view {view.name}: registry metadata only (timestamps Feast keeps)" in output
    assert len(output.splitlines()) <= 10, output
    full = run([sys.executable, "apply.py", "--plan", "--full-diff"], cwd=repo_dir).stdout
    assert "Updated feature view" in full and len(full.splitlines()) > len(output.splitlines())
    run([sys.executable, "apply.py"], cwd=repo_dir)
    store = FeatureStore(repo_path=str(repo_dir))
    assert all(store.get_feature_view(view.name).materialization_intervals for view in VIEWS)


def test_a_plan_computes_and_writes_nothing_and_names_the_changed_code(tmp_path):
    """After a transform changed, the plan says which view's code did, and no file of data/
    (table, registry, online store, lineage events) changes."""
    repo_dir = applied_copy(tmp_path, *SMALL)
    files = lambda: {p: p.read_bytes() for p in sorted((repo_dir / "data").rglob("*")) if p.is_file()}  # noqa: E731
    before = files()
    edit(repo_dir / CODE_EDIT.file, CODE_EDIT.old, CODE_EDIT.new)
    output = run([sys.executable, "apply.py", "--plan"], cwd=repo_dir).stdout
    changed = [line for line in output.splitlines() if line.startswith("Updated feature view")]
    assert len(changed) == 1 and ": code of " in changed[0], output
    assert all(field in changed[0] for field in CODE_EDIT.fields) or CODE_EDIT.file.removesuffix(".py") in changed[0]
    assert files() == before


def test_feast_apply_registers_what_the_apply_script_registers(tmp_path):
    repo_dir = applied_copy(tmp_path, *SMALL)
    by_script = registry_objects(repo_dir)
    (repo_dir / "data" / "registry.db").unlink()
    (repo_dir / "data" / "online_store.db").unlink()
    run(["feast", "apply"], cwd=repo_dir)
    assert registry_objects(repo_dir) == by_script


def test_feast_apply_before_any_features_are_saved_says_what_to_run(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL)
    result = run(["feast", "apply"], cwd=repo_dir, expect_success=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: nothing was registered: no feature table at")
    assert "python apply.py" in result.stderr
    assert not (repo_dir / "data" / "registry.db").exists()
