"""The sample-data generator of the default and simple repos: seeded, UTC, where the sources read."""

import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, copy_repo, repo_modules, run
from feast import FileSource, PushSource

REPOS = ["default_feature_store", "simple_feature_store"]
END = pd.Timestamp("2026-03-01T12:00:00Z")


@pytest.fixture(scope="module")
def generator():
    with repo_modules(ROOT / "default_feature_store") as import_module:
        yield import_module("generate_data")


def test_each_repo_ships_the_same_generator():
    """Each repo folder must work on its own when copied, so each has the file; they must not drift."""
    texts = {(ROOT / repo / "generate_data.py").read_text() for repo in REPOS}
    assert len(texts) == 1


def test_same_seed_and_end_give_the_same_data(generator):
    assert generator.driver_stats(END, 3, seed=1).equals(generator.driver_stats(END, 3, seed=1))
    assert generator.driver_quality_labels(END, 3, seed=1).equals(
        generator.driver_quality_labels(END, 3, seed=1)
    )


def test_another_seed_gives_other_data(generator):
    a = generator.driver_stats(END, 3, seed=1).column("conv_rate")
    b = generator.driver_stats(END, 3, seed=2).column("conv_rate")
    assert not a.equals(b)


def test_driver_stats_are_hourly_utc_and_end_before_the_end(generator):
    stats = generator.driver_stats(END, days=2).to_pandas()
    assert str(stats.event_timestamp.dtype) == "datetime64[us, UTC]"
    assert str(stats.created.dtype) == "datetime64[us, UTC]"
    assert stats.event_timestamp.max() == END - pd.Timedelta(hours=1)
    assert stats.event_timestamp.min() == END - pd.Timedelta(days=2)
    assert len(stats) == 5 * 48
    assert not stats.duplicated(["driver_id", "event_timestamp"]).any()
    delay = stats.created - stats.event_timestamp
    assert delay.min() >= pd.Timedelta(minutes=1) and delay.max() <= pd.Timedelta(minutes=30)
    assert stats.conv_rate.between(0, 1).all() and stats.conv_rate.dtype == "float32"


def test_labels_are_daily_utc_and_consistent(generator):
    labels = generator.driver_quality_labels(END, days=4).to_pandas()
    assert str(labels.event_timestamp.dtype) == "datetime64[us, UTC]"
    assert len(labels) == 5 * 4
    assert ((labels.quality_score >= 3.0) == (labels.is_reliable == 1)).all()


def test_end_defaults_to_the_current_utc_hour(generator):
    hour = generator.utc_hour()
    assert hour.tz is not None and str(hour.tz) == "UTC"
    assert pd.Timestamp.now(tz="UTC") - hour < pd.Timedelta(hours=1)
    assert generator.utc_hour("2026-03-01 12:34:56+02:00") == pd.Timestamp("2026-03-01T10:00Z")


@pytest.mark.parametrize("repo", REPOS)
def test_cli_writes_where_the_repo_sources_read(repo, tmp_path):
    repo_dir = copy_repo(repo, tmp_path)
    run([sys.executable, "generate_data.py", "--end", "2026-03-01T12:00Z", "--days", "2"], repo_dir)
    with repo_modules(repo_dir) as import_module:
        # What `feast apply` would collect: file sources, and push sources' batch sources.
        objects = list(vars(import_module("feature_definitions")).values())
    sources = [o for o in objects if isinstance(o, FileSource)]
    sources += [o.batch_source for o in objects if isinstance(o, PushSource)]
    source_paths = {source.path for source in sources}
    for path in source_paths:
        assert pq.read_metadata(repo_dir / path).num_rows > 0, path
    assert source_paths == {"data/driver_stats.parquet", "data/driver_quality_labels.parquet"}


def test_cli_rejects_an_empty_history(tmp_path):
    repo_dir = copy_repo("default_feature_store", tmp_path)
    result = run([sys.executable, "generate_data.py", "--days", "0"], repo_dir, expect_success=False)
    assert "--days must be at least 1" in result.stderr
    assert not (repo_dir / "data").exists()
