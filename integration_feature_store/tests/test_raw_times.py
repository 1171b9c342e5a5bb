"""Raw data in any timestamp unit and zone, summer time changes included, gives the same saved
tables (UTC microseconds, as Feast stores times), the same training sets by both paths and the
same online values as the same instants in UTC."""

import sys

import numpy as np
import pandas as pd
import pytest
from this_repo import RAW_DATA, REPO, SERVICES, SMALL, VIEW, VIEWS, entity_rows, saved_table

from feast import FeatureStore
from hamilton_feast import training_sets
from hamilton_feast.testing import copy_repo, generate_data, run

# When Berlin's clocks change in 2026 (at 01:00 UTC): forward on 29 March, back on 25 October.
SUMMER_TIME_CHANGES = [pd.Timestamp("2026-03-29 01:00", tz="UTC"), pd.Timestamp("2026-10-25 01:00", tz="UTC")]


def time_columns(raw: pd.DataFrame) -> list[str]:
    return [column for column in raw.columns if isinstance(raw[column].dtype, pd.DatetimeTZDtype)]


def in_unit_and_zone(raw: pd.DataFrame, unit: str, zone: str) -> pd.DataFrame:
    return raw.assign(**{c: raw[c].dt.tz_convert(zone).dt.as_unit(unit) for c in time_columns(raw)})


def tables_after_apply(repo_dir, raw: pd.DataFrame, *apply_args: str) -> list[pd.DataFrame]:
    raw.to_parquet(repo_dir / RAW_DATA)
    run([sys.executable, "apply.py", *apply_args], cwd=repo_dir)
    return [saved_table(repo_dir, view) for view in VIEWS]


@pytest.fixture
def copy_with_raw_data(tmp_path):
    """A copy with a small sample of raw data, its times in whole seconds (so every unit holds
    the same instants)."""
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL)
    raw = pd.read_parquet(repo_dir / RAW_DATA)
    return repo_dir, raw.assign(**{c: raw[c].dt.floor("s") for c in time_columns(raw)})


@pytest.mark.parametrize("unit, entity_unit, zone", [("ms", "s", "Asia/Kolkata"), ("ns", "ns", "America/New_York")])
def test_raw_data_in_any_unit_and_zone_gives_the_same_tables_training_sets_and_online_values(
        copy_with_raw_data, unit, entity_unit, zone):
    """pandas writes nanoseconds by default; other systems write milliseconds (parquet has no
    seconds), in their own zone."""
    repo_dir, raw = copy_with_raw_data
    expected = tables_after_apply(repo_dir, raw)
    local = in_unit_and_zone(raw, unit, zone)
    assert all(str(local[c].dtype) == f"datetime64[{unit}, {zone}]" for c in time_columns(raw))
    tables = tables_after_apply(repo_dir, local, "--materialize")
    for table, expected_table in zip(tables, expected):
        assert str(table[VIEW.timestamp].dtype) == "datetime64[us, UTC]"
        pd.testing.assert_frame_equal(table, expected_table)

    store = FeatureStore(repo_path=str(repo_dir))
    entity_df = entity_rows(expected[0].sample(200, random_state=7))
    entity_df.loc[::3, "event_timestamp"] -= pd.Timedelta(minutes=37)
    entity_df = entity_df.assign(**{c: entity_df[c].dt.tz_convert(zone).dt.as_unit(entity_unit)
                                    for c in time_columns(entity_df)})
    for service in SERVICES:
        service = store.get_feature_service(service)
        by_feast = training_sets.get_training_set_from_feast(store, entity_df, service)
        fast = training_sets.get_training_set(store, entity_df, service)
        for name in [f.name for p in service.feature_view_projections for f in p.features]:
            np.testing.assert_array_equal(
                fast[name].astype("float64").to_numpy(), by_feast[name].astype("float64").to_numpy(), name)
        assert by_feast.notna().sum().min() > 100

    now = pd.Timestamp.now(tz="UTC")
    latest = expected[0].sort_values([VIEW.timestamp, VIEW.created]).groupby(VIEW.keys).last()
    fresh = latest[latest[VIEW.timestamp] > now - store.get_feature_view(VIEW.name).ttl].index.tolist()
    field = VIEW.fields[-1]
    served = store.get_online_features(features=[f"{VIEW.name}:{field}"],
                                       entity_rows=[dict(zip(VIEW.keys, [key])) for key in fresh]).to_dict()
    assert fresh and served[field] == latest.loc[fresh, field].tolist()


def test_raw_data_in_local_time_across_both_summer_time_changes_gives_the_same_tables(copy_with_raw_data):
    """Europe/Berlin nanoseconds over the hour that is skipped in March and the hour that is
    repeated in October (each wall-clock time twice, an hour apart): the same instants in UTC
    give the same tables."""
    repo_dir, raw = copy_with_raw_data
    middle = raw[VIEW.timestamp].min() + (raw[VIEW.timestamp].max() - raw[VIEW.timestamp].min()) / 2
    around = [raw.assign(**{c: raw[c] + (change - middle).floor("s") for c in time_columns(raw)})
              for change in SUMMER_TIME_CHANGES]
    in_utc = pd.concat(around, ignore_index=True)
    expected = tables_after_apply(repo_dir, in_utc)
    in_berlin = in_unit_and_zone(in_utc, "ns", "Europe/Berlin")
    wall = in_berlin[VIEW.timestamp].dt.tz_localize(None)
    repeated = in_berlin[(wall >= "2026-10-25 02:00") & (wall < "2026-10-25 03:00")]
    assert repeated[VIEW.timestamp].map(lambda t: t.utcoffset()).nunique() == 2, "the repeated hour"
    assert not ((wall >= "2026-03-29 02:00") & (wall < "2026-03-29 03:00")).any(), "the skipped hour"
    for table, expected_table in zip(tables_after_apply(repo_dir, in_berlin), expected):
        pd.testing.assert_frame_equal(table, expected_table)
