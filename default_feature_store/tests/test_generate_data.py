"""The sample-data generator of this repo (and of simple_feature_store, which ships the same
file): seeded, UTC, written where the sources read."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from feast import FileSource, PushSource
from hamilton_feast.testing import copy_repo, run

REPO = Path(__file__).resolve().parent.parent
END = pd.Timestamp("2026-03-01T12:00:00Z")


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("default_generate_data", REPO / "generate_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_cli_writes_where_the_repo_sources_read(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    run([sys.executable, "generate_data.py", "--end", "2026-03-01T12:00Z", "--days", "2"], repo_dir)
    # What `feast apply` collects: file sources, and push sources' batch sources.
    spec = importlib.util.spec_from_file_location("default_definitions", repo_dir / "feature_definitions.py")
    definitions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(definitions)
    objects = list(vars(definitions).values())
    sources = [o for o in objects if isinstance(o, FileSource)]
    sources += [o.batch_source for o in objects if isinstance(o, PushSource)]
    source_paths = {source.path for source in sources}
    for path in source_paths:
        assert pq.read_metadata(repo_dir / path).num_rows > 0, path
    assert source_paths == {"data/driver_stats.parquet", "data/driver_quality_labels.parquet"}


def test_cli_rejects_an_empty_history(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    result = run([sys.executable, "generate_data.py", "--days", "0"], repo_dir, expect_success=False)
    assert "--days must be at least 1" in result.stderr
    assert not (repo_dir / "data").exists()
