"""default_feature_store is what `feast init` generates with the pinned feast; simple_feature_store
registers exactly the same objects, and its code differs from it by one idea: each object is
returned by a Hamilton function whose arguments are the objects it depends on."""

import re
import subprocess
from pathlib import Path

import feast
import pandas as pd
import pytest
from cross_repo import APPLY, DEFAULT, ROOT, SIMPLE

from feast import FeatureStore
from hamilton_feast.testing import copy_repo, generate_data, registry_objects, run

TEMPLATE = Path(feast.__file__).parent / "templates" / "local" / "feature_repo"
# What `feast init`'s bootstrap fills in, with this repo's name and its data where it puts it.
PLACEHOLDERS = {
    "%PROJECT_NAME%": DEFAULT,
    "%PARQUET_PATH%": "data/driver_stats.parquet",
    "%LOGGING_PATH%": "data",
    "%LABEL_DATA_PATH%": "data/driver_quality_labels.parquet",
}
MAX_CHANGED_LINES = 120  # in `diff -w` of the two definition files


def applied_copy(tmp_path_factory, name: str):
    """A copy of repo `name` with fresh data, registered its own way."""
    repo_dir = copy_repo(ROOT / name, tmp_path_factory.mktemp(name))
    generate_data(repo_dir)
    run(APPLY[name], cwd=repo_dir)
    return repo_dir


@pytest.fixture(scope="module")
def default_repo(tmp_path_factory):
    return applied_copy(tmp_path_factory, DEFAULT)


@pytest.fixture(scope="module")
def simple_repo(tmp_path_factory):
    return applied_copy(tmp_path_factory, SIMPLE)


def test_the_default_repo_is_the_feast_template():
    template = (TEMPLATE / "feature_definitions.py").read_text()
    for placeholder, value in PLACEHOLDERS.items():
        template = template.replace(placeholder, value)
    assert (ROOT / DEFAULT / "feature_definitions.py").read_text() == template
    store_yaml = (TEMPLATE / "feature_store.yaml").read_text().replace("project: my_project", f"project: {DEFAULT}")
    assert (ROOT / DEFAULT / "feature_store.yaml").read_text() == store_yaml


def test_the_simple_repo_differs_from_the_default_repo_by_the_one_idea():
    """`x = Foo(...)` becomes `def x(deps) -> Foo: return Foo(...)`, plus settings: a small diff
    that keeps every teaching comment of the template."""
    default = ROOT / DEFAULT / "feature_definitions.py"
    simple = ROOT / SIMPLE / "feast_objects.py"
    diff = subprocess.run(["diff", "-w", str(default), str(simple)], capture_output=True, text=True).stdout
    changed = [line for line in diff.splitlines() if line[:2] in ("< ", "> ") or line in ("<", ">")]
    assert len(changed) <= MAX_CHANGED_LINES, diff
    comments = [line.strip() for line in default.read_text().splitlines() if line.strip().startswith("#")]
    simple_lines = {line.strip() for line in simple.read_text().splitlines()}
    kept = [c for c in comments[1:] if c in simple_lines]  # the first line says what the file is
    assert kept == comments[1:]
    assert len(comments) >= 31
    # Every object the template assigns is a function of the simple repo.
    assigned = re.findall(r"^(\w+) = (\w+)\(", default.read_text(), flags=re.MULTILINE)
    returned = re.findall(r"^def (\w+)\(.*?\) -> (\w+):", simple.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert sorted(kind for _, kind in assigned) == sorted(kind for _, kind in returned if kind != "OnDemandFeatureView")


def test_each_repo_ships_the_same_generator():
    """Each repo folder must work on its own when copied, so each has the file; they must not drift."""
    assert (ROOT / DEFAULT / "generate_data.py").read_text() == (ROOT / SIMPLE / "generate_data.py").read_text()


def test_simple_repo_registers_the_same_objects_as_the_default_repo(default_repo, simple_repo):
    """Compared: every field of every registered object. Ignored (see registry_objects): created
    and updated timestamps, project names, and the on-demand UDFs' source text, pickled bytes
    and function names (the UDFs are compared by behaviour in the next test)."""
    default_objects = registry_objects(default_repo, ignore_udf_code=True)
    simple_objects = registry_objects(simple_repo, ignore_udf_code=True)
    assert sorted(simple_objects) == sorted(default_objects)
    for key, definition in default_objects.items():
        assert simple_objects[key] == definition, f"{key} differs"
    assert len(default_objects) == 16


def test_on_demand_views_compute_the_same_values_in_both_repos(default_repo, simple_repo):
    inputs = pd.DataFrame(
        {"conv_rate": [0.1, 0.5, 0.9], "val_to_add": [1, 2, 3], "val_to_add_2": [10, 20, 30]}
    )
    for name in ["transformed_conv_rate", "transformed_conv_rate_fresh"]:
        # Read back from each registry, as the feature server would.
        outputs = [
            FeatureStore(repo_path=str(repo)).get_on_demand_feature_view(name)
            .feature_transformation.udf(inputs.copy())
            for repo in (default_repo, simple_repo)
        ]
        pd.testing.assert_frame_equal(outputs[0], outputs[1])
        assert outputs[0]["conv_rate_plus_val2"].tolist() == pytest.approx([10.1, 20.5, 30.9])
