"""simple_feature_store registers exactly what default_feature_store registers, whichever way
it is applied, and its apply script keeps Feast's apply semantics."""

import inspect
import sys

import pandas as pd
import pytest

from conftest import ROOT, copy_repo, file_hashes, generate_data, repo_modules, run
from feast import FeatureStore
from registry_protos import registry_objects

DEFAULT, SIMPLE = "default_feature_store", "simple_feature_store"


def applied_copy(tmp_path_factory, name: str, apply_command: list[str]):
    """A copy of repo `name` with fresh data, registered by `apply_command`."""
    repo_dir = copy_repo(name, tmp_path_factory.mktemp(name))
    generate_data(repo_dir)
    run(apply_command, cwd=repo_dir)
    return repo_dir


@pytest.fixture(scope="module")
def default_repo(tmp_path_factory):
    return applied_copy(tmp_path_factory, DEFAULT, ["feast", "apply"])


@pytest.fixture(scope="module")
def simple_repo_applied_by_script(tmp_path_factory):
    return applied_copy(tmp_path_factory, SIMPLE, [sys.executable, "apply.py"])


@pytest.fixture(scope="module")
def simple_repo_applied_by_cli(tmp_path_factory):
    return applied_copy(tmp_path_factory, SIMPLE, ["feast", "apply"])


def test_simple_repo_registers_the_same_objects_as_the_default_repo(
    default_repo, simple_repo_applied_by_script
):
    """Compared: every field of every registered object. Ignored (see registry_protos): created
    and updated timestamps, project names, and the on-demand UDFs' source text, pickled bytes
    and function names (the Hamilton repo shares one UDF between its two on-demand views);
    the UDFs are compared by behaviour in the next test."""
    default_objects = registry_objects(default_repo, ignore_udf_code=True)
    simple_objects = registry_objects(simple_repo_applied_by_script, ignore_udf_code=True)
    assert sorted(simple_objects) == sorted(default_objects)
    for key, definition in default_objects.items():
        assert simple_objects[key] == definition, f"{key} differs"
    assert len(default_objects) == 16


def test_on_demand_views_compute_the_same_values_in_both_repos(
    default_repo, simple_repo_applied_by_script
):
    inputs = pd.DataFrame(
        {"conv_rate": [0.1, 0.5, 0.9], "val_to_add": [1, 2, 3], "val_to_add_2": [10, 20, 30]}
    )
    for name in ["transformed_conv_rate", "transformed_conv_rate_fresh"]:
        # Read back from each registry, as the feature server would.
        outputs = [
            FeatureStore(repo_path=str(repo)).get_on_demand_feature_view(name)
            .feature_transformation.udf(inputs.copy())
            for repo in (default_repo, simple_repo_applied_by_script)
        ]
        pd.testing.assert_frame_equal(outputs[0], outputs[1])
        assert outputs[0]["conv_rate_plus_val2"].tolist() == pytest.approx([10.1, 20.5, 30.9])


def test_feast_apply_and_the_apply_script_register_equal_registries(
    simple_repo_applied_by_cli, simple_repo_applied_by_script
):
    """Nothing but timestamps is ignored here: the same code, registered two ways."""
    by_cli = registry_objects(simple_repo_applied_by_cli)
    by_script = registry_objects(simple_repo_applied_by_script)
    assert by_cli == by_script


def test_each_path_sees_no_changes_after_the_other(simple_repo_applied_by_cli):
    after_cli = run([sys.executable, "apply.py", "--plan"], cwd=simple_repo_applied_by_cli).stdout
    assert "No changes to registry" in after_cli


def test_apply_script_deletes_objects_removed_from_the_code(tmp_path):
    """As `feast apply` does: the registry follows the code, deletions included. The plan
    announces the deletion and changes nothing; apply carries it out."""
    repo_dir = copy_repo(SIMPLE, tmp_path)
    generate_data(repo_dir)
    run([sys.executable, "apply.py"], cwd=repo_dir)

    feast_objects = repo_dir / "feast_objects.py"
    source = feast_objects.read_text()
    start = source.index("def driver_activity_v2(")
    end = source.index("def driver_stats_push_source(")
    feast_objects.write_text(source[:start] + source[end:])

    plan = run([sys.executable, "apply.py", "--plan"], cwd=repo_dir).stdout
    assert "Deleted feature service" in plan and "driver_activity_v2" in plan
    services = lambda: {fs.name for fs in FeatureStore(repo_path=str(repo_dir)).list_feature_services()}
    assert "driver_activity_v2" in services()

    run([sys.executable, "apply.py"], cwd=repo_dir)
    assert services() == {"driver_activity_v1", "driver_activity_v3"}


def test_apply_script_refuses_a_project_that_is_not_the_one_in_feature_store_yaml(tmp_path):
    repo_dir = copy_repo(SIMPLE, tmp_path)
    dataflow = repo_dir / "dataflow.py"
    dataflow.write_text(
        dataflow.read_text().replace(
            '"project_name": feature_store_yaml["project"]', '"project_name": "another_project"'
        )
    )
    before = file_hashes(repo_dir)
    result = run([sys.executable, "apply.py"], cwd=repo_dir, expect_success=False)
    assert "error: nothing was registered" in result.stderr
    assert "another_project" in result.stderr and "simple_feature_store" in result.stderr
    assert not (repo_dir / "data" / "registry.db").exists()
    assert file_hashes(repo_dir) == before


def test_every_feast_object_keeps_its_node_name():
    """Node names are the repo's public names: each node returns the object of that name
    (the project is named by feature_store.yaml)."""
    with repo_modules(ROOT / SIMPLE) as import_module:
        objects = import_module("dataflow").feast_objects_by_name()
    assert objects.pop("project").name == SIMPLE
    assert {name: obj.name for name, obj in objects.items()} == {name: name for name in objects}


def test_committed_dag_picture_is_current():
    """dag.dot and dag.png are drawn from the code by `python dataflow.py`; redraw after a change."""
    with repo_modules(ROOT / SIMPLE) as import_module:
        drawn = import_module("dataflow").dag_picture().source
    assert (ROOT / SIMPLE / "dag.dot").read_text() == drawn
    assert (ROOT / SIMPLE / "dag.png").stat().st_size > 10_000


def test_both_hamilton_repos_carry_the_same_registration_helpers():
    """Each Hamilton repo has its own dataflow.py so that it works when copied alone; the parts
    that are not about the repo's own DAG must stay the same in both."""
    sources = []
    for repo in (SIMPLE, "integration_feature_store"):
        with repo_modules(ROOT / repo) as import_module:
            dataflow = import_module("dataflow")
            sources.append([inspect.getsource(f) for f in (dataflow.repo_contents, dataflow.draw)])
    assert sources[0] == sources[1]
