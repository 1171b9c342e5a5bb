"""simple_feature_store: its apply script keeps Feast's apply semantics, `feast apply` registers
the same objects, each Feast object keeps its node's name, and its picture is current."""

import hashlib
import sys
from pathlib import Path

import pytest

from feast import FeatureStore
from hamilton_feast import Repo, drawing
from hamilton_feast.testing import copy_repo, edit, file_hashes, generate_data, registry_objects, run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def applied(tmp_path):
    """A copy with fresh data, registered by `python apply.py`."""
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir)
    run([sys.executable, "apply.py"], cwd=repo_dir)
    return repo_dir


def services(repo_dir) -> set[str]:
    return {fs.name for fs in FeatureStore(repo_path=str(repo_dir)).list_feature_services()}


def test_feast_apply_and_the_apply_script_register_equal_registries(applied):
    """Nothing but timestamps is ignored: the same code in the same folder, registered two ways."""
    by_script = registry_objects(applied)
    (applied / "data" / "registry.db").unlink()
    (applied / "data" / "online_store.db").unlink()
    run(["feast", "apply"], cwd=applied)
    assert registry_objects(applied) == by_script
    assert "No changes to registry" in run([sys.executable, "apply.py", "--plan"], cwd=applied).stdout


def test_apply_script_deletes_objects_removed_from_the_code(applied):
    """As `feast apply` does: the registry follows the code, deletions included. The plan
    announces the deletion and changes nothing; apply carries it out."""
    feast_objects = applied / "feast_objects.py"
    source = feast_objects.read_text()
    start = source.index("def driver_activity_v2(")
    end = source.index("# Defines a way to push data")
    feast_objects.write_text(source[:start] + source[end:])

    registry_before = hashlib.sha256((applied / "data" / "registry.db").read_bytes()).hexdigest()
    plan = run([sys.executable, "apply.py", "--plan"], cwd=applied).stdout
    assert "Deleted feature service" in plan and "driver_activity_v2" in plan
    assert hashlib.sha256((applied / "data" / "registry.db").read_bytes()).hexdigest() == registry_before
    assert "driver_activity_v2" in services(applied)

    run([sys.executable, "apply.py"], cwd=applied)
    assert services(applied) == {"driver_activity_v1", "driver_activity_v3"}


def test_plan_on_a_fresh_copy_writes_nothing(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir)
    data_before = {p: p.read_bytes() for p in (repo_dir / "data").rglob("*") if p.is_file()}
    output = run([sys.executable, "apply.py", "--plan"], cwd=repo_dir).stdout
    assert "Created feature view" in output and "driver_hourly_stats" in output
    assert {p: p.read_bytes() for p in (repo_dir / "data").rglob("*") if p.is_file()} == data_before


def test_apply_script_refuses_a_project_that_is_not_the_one_in_feature_store_yaml(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    edit(repo_dir / "feast_objects.py", "Project(name=project_name,", 'Project(name="another_project",')
    before = file_hashes(repo_dir)
    result = run([sys.executable, "apply.py"], cwd=repo_dir, expect_success=False)
    assert "error: nothing was registered" in result.stderr
    assert ("the DAG defines project(s) ['another_project'], but feature_store.yaml names project "
            "'simple_feature_store'") in result.stderr
    assert not (repo_dir / "data" / "registry.db").exists()
    assert file_hashes(repo_dir) == before


def test_duplicate_feature_view_names_are_refused_and_change_nothing(applied):
    before = hashlib.sha256((applied / "data/registry.db").read_bytes()).hexdigest()
    edit(applied / "feast_objects.py", 'name="driver_hourly_stats_fresh",', 'name="driver_hourly_stats",')
    result = run([sys.executable, "apply.py"], applied, expect_success=False)
    assert "error: nothing was registered" in result.stderr
    assert "Multiple FeatureViews with name 'driver_hourly_stats' found" in result.stderr
    assert hashlib.sha256((applied / "data/registry.db").read_bytes()).hexdigest() == before


def test_every_feast_object_keeps_its_node_name():
    """Node names are the repo's public names: each node returns the object of that name
    (the project is named by feature_store.yaml)."""
    objects = Repo(REPO).feast_objects()
    assert objects.pop("project").name == REPO.name
    assert {name: obj.name for name, obj in objects.items()} == {name: name for name in objects}
    assert len(objects) == 13  # the 14 objects of the template but the project


def test_committed_picture_is_current():
    """dag.dot and dag.png are drawn from the code by `hamilton-feast draw`."""
    assert drawing.outdated(drawing.pictures(Repo(REPO))) == []


def test_the_apply_script_is_short_and_builds_the_driver_in_plain_sight():
    source = (REPO / "apply.py").read_text()
    assert len(source.splitlines()) <= 40
    assert "driver.Builder()" in source and ".build()" in source and "dr.execute(" in source


def test_sample_data_is_written_where_settings_yaml_puts_the_sources(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    edit(repo_dir / "settings.yaml", "driver_stats_path: data/driver_stats.parquet",
         "driver_stats_path: data/stats/hourly.parquet")
    generate_data(repo_dir, "--days", "1")
    assert (repo_dir / "data" / "stats" / "hourly.parquet").is_file()
    source = Repo(repo_dir).feast_objects(overrides={})["driver_hourly_stats_source"]
    assert source.path == "data/stats/hourly.parquet"
