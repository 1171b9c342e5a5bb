"""The hamilton_feast package on small repos of its own: every kind of Feast object a DAG defines
is registered, declarations are checked with errors that name what is wrong, and the helpers
around a run (progress bar, notices, pictures) do what they say."""

import subprocess
import sys
import textwrap
import time
import types
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hamilton import driver
from cross_repo import INTEGRATION, ROOT
from hamilton.plugins import h_tqdm

from feast import Entity, FeatureService, FeatureView, Field, FileSource, LabelView, Project, PushSource
from feast.permissions.action import AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy
from feast.types import Float64, Int64
from hamilton_feast import Repo, atomic, feast_operations, objects, script
from hamilton_feast.notices import known_notices_hidden
from hamilton_feast.testing import copy_repo, edit, killed, run

FEATURE_STORE_YAML = """project: tiny
registry: data/registry.db
provider: local
online_store:
    type: sqlite
    path: data/online_store.db
entity_key_serialization_version: 3
"""
FEAST_OBJECTS = '''
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, LabelView, Project, PushSource, ValueType
from feast.permissions.action import AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy
from feast.types import Float64, Int64


def project(project_name: str) -> Project:
    return Project(name=project_name)


def rider() -> Entity:
    return Entity(name="rider", join_keys=["rider_id"], value_type=ValueType.INT64)


def rider_stats(rider: Entity, rider_stats_path: str, rider_stats_ttl: timedelta) -> FeatureView:
    return FeatureView(
        name="rider_stats", entities=[rider], ttl=rider_stats_ttl,
        schema=[Field(name="trips", dtype=Int64)],
        source=FileSource(name="rider_stats_source", path=rider_stats_path, timestamp_field="event_timestamp"),
    )


def rider_ratings(rider: Entity) -> LabelView:
    return LabelView(
        name="rider_ratings", entities=[rider], schema=[Field(name="rating", dtype=Float64)],
        source=PushSource(name="rider_ratings_push", batch_source=FileSource(
            name="rider_ratings_batch", path="data/ratings.parquet", timestamp_field="event_timestamp")),
    )


def rider_model(rider_stats: FeatureView) -> FeatureService:
    return FeatureService(name="rider_model", features=[rider_stats])


def readers() -> Permission:
    return Permission(name="readers", types=[FeatureView], policy=RoleBasedPolicy(roles=["reader"]),
                      actions=[AuthzedAction.DESCRIBE])
'''


def tiny_repo(folder, feast_objects: str = FEAST_OBJECTS, settings: str | None = None):
    (folder / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (folder / "feast_objects.py").write_text(feast_objects)
    (folder / "settings.yaml").write_text(settings or textwrap.dedent("""\
        modules: [feast_objects]
        inputs:
          rider_stats_path: data/rider_stats.parquet
          rider_stats_ttl: 2 hours
        """))
    return folder


def test_every_kind_of_feast_object_in_a_dag_is_registered(tmp_path):
    """Objects are found by type: a label view and a permission too, and the sources nested in
    a view or a push source, as Feast's own parser finds them."""
    repo = Repo(tiny_repo(tmp_path))
    assert repo.feast_object_nodes == sorted(["project", "rider", "rider_stats", "rider_ratings", "rider_model", "readers"])
    assert repo.inputs["rider_stats_ttl"] == timedelta(hours=2)
    dr = driver.Builder().with_modules(*repo.modules, feast_operations).with_config(repo.config).build()
    dr.execute(["registered"], inputs=repo.inputs)
    store = feast_operations.feature_store(str(tmp_path), "feature_store.yaml")
    assert [v.name for v in store.list_label_views()] == ["rider_ratings"]
    assert [p.name for p in store.list_permissions()] == ["readers"]
    assert {s.name for s in store.list_data_sources()} == {"rider_stats_source", "rider_ratings_push", "rider_ratings_batch"}
    assert [s.name for s in store.list_feature_services()] == ["rider_model"]


def test_repo_contents_sorts_each_object_once_and_refuses_what_feast_should():
    rider = Entity(name="rider", join_keys=["rider_id"])
    source = FileSource(name="stats", path="stats.parquet", timestamp_field="event_timestamp")
    view = FeatureView(name="stats", entities=[rider], schema=[Field(name="x", dtype=Int64)],
                       source=PushSource(name="push", batch_source=source))
    label = LabelView(name="labels", entities=[rider], schema=[Field(name="y", dtype=Float64)],
                      source=PushSource(name="label_push", batch_source=FileSource(
                          name="label_batch", path="labels.parquet", timestamp_field="event_timestamp")))
    permission = Permission(name="p", types=[FeatureView], policy=RoleBasedPolicy(roles=["r"]),
                            actions=[AuthzedAction.DESCRIBE])
    service = FeatureService(name="svc", features=[view])
    contents = objects.repo_contents([Project(name="p"), rider, source, view, label, permission, service], "p")
    assert [s.name for s in contents.data_sources] == ["stats", "push", "label_push", "label_batch"]
    assert [v.name for v in contents.feature_views] == ["stats"]
    assert [v.name for v in contents.label_views] == ["labels"]
    assert [p.name for p in contents.permissions] == ["p"]
    assert [e.name for e in contents.entities] == ["rider", "__dummy"]

    with pytest.raises(ValueError, match=r"the DAG defines project\(s\) \['p'\], but feature_store.yaml names project 'q'"):
        objects.repo_contents([Project(name="p"), rider, view], "q")
    with pytest.raises(ValueError, match=r"'labels' uses entity 'rider', which no node of the DAG defines; expected one of \[\]"):
        objects.repo_contents([Project(name="p"), label], "p")
    with pytest.raises(TypeError, match="is not a Feast object that can be applied"):
        objects.repo_contents([Project(name="p"), "not a Feast object"], "p")


def features_module(tmp_path, source: str):
    """A module of features in its own folder, imported under a name of its own."""
    name = f"features_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(tmp_path))


HEADER = """
import numpy as np
import pandas as pd
from hamilton.function_modifiers import check_output, tag
"""


def test_feature_fields_are_the_tagged_functions_named_described_and_typed_by_them(tmp_path):
    module = features_module(tmp_path, HEADER + '''
@tag(feast_view="v")
@check_output(data_type=np.float64, importance="fail")
def b_share(a: pd.Series) -> pd.Series:
    """Share of it.

    More text that is not the description."""
    return a / a.sum()


@tag(feast_view="v")
@check_output(data_type=np.bool_, importance="fail")
def a_flag(a: pd.Series) -> pd.Series:
    """Whether it is positive."""
    return a > 0


@tag(feast_view="other")
@check_output(data_type=np.int64, importance="fail")
def c_elsewhere(a: pd.Series) -> pd.Series:
    """In another view."""
    return a
''')
    fields = objects.feature_fields("v", module)
    assert [(f.name, str(f.dtype), f.description) for f in fields] == [
        ("b_share", "Float64", "Share of it."), ("a_flag", "Bool", "Whether it is positive.")]  # module order


def test_feature_fields_read_the_module_given_even_if_another_of_its_name_is_loaded(tmp_path, monkeypatch):
    """Two repos' modules share names (trip_features...); one process may load both."""
    body = HEADER + '@tag(feast_view="v")\n@check_output(data_type=np.int64, importance="fail")\n' \
        'def only_here(a: pd.Series) -> pd.Series:\n    """Only in this module."""\n    return a\n'
    module = features_module(tmp_path, body)
    monkeypatch.setitem(sys.modules, module.__name__, types.ModuleType(module.__name__))  # another of that name
    assert [f.name for f in objects.feature_fields("v", module)] == ["only_here"]


@pytest.mark.parametrize("body, message", [
    ('@tag(feast_view="v")\ndef x(a: pd.Series) -> pd.Series:\n    """X."""\n    return a\n',
     "feature 'x' of view 'v' declares data_type None in its @check_output; expected one of"),
    ('@tag(feast_view="v")\n@check_output(data_type=np.int64, importance="fail")\n'
     'def x(a: pd.Series) -> pd.Series:\n    return a\n',
     "feature 'x' of view 'v' has no docstring; expected one line describing it"),
    ('def x(a: pd.Series) -> pd.Series:\n    """X."""\n    return a\n',
     r"no function is tagged @tag\(feast_view='v'\); expected its features"),
])
def test_feature_fields_refuse_a_feature_declared_by_halves(tmp_path, body, message):
    module = features_module(tmp_path, HEADER + body)
    with pytest.raises(ValueError, match=message):
        objects.feature_fields("v", module)


@pytest.mark.parametrize("settings, message", [
    ("inputs: {}\n", "lists no modules; expected the modules of the Hamilton DAG"),
    ("modules: [feast_object]\n", "settings.yaml lists module 'feast_object', but"),
    ("modules: [feast_objects]\ninputs: {rider_stats_path: x, rider_stats_ttl: 1h, ttl: 2h}\n",
     "settings.yaml line 2: input 'ttl' is used by no function of the DAG; expected one of: rider_stats_path, "
     "rider_stats_ttl$"),
    ("modules: [feast_objects]\nmodule: [x]\n", r"settings.yaml line 2: unknown key 'module'; expected one of"),
    ("modules: [feast_objects]\ninputs: {rider_stats_path: x\n", r"settings.yaml line 3: not valid YAML \("),
    ("modules: [feast_objects]\ninputs: [rider_stats_path]\n",
     r"settings.yaml line 2: inputs: holds a list; expected names, each with its value"),
])
def test_bad_settings_are_refused_naming_the_setting(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        Repo(tiny_repo(tmp_path, settings=settings))


@pytest.mark.parametrize("old, new, message", [
    ("\nspark:\n", "\nnot_spark:\n", r"feature_store.spark.yaml has a Spark offline store, but settings.yaml has no "
                                      r"`spark:` section; expected where Spark saves the tables"),
    ("time_partitions: 4 days", "time_partitions: four days", r"settings.yaml line \d+: spark: time_partitions is "
                                                               r"'four days'; expected a duration such as '1 day'"),
    ("time_partitions: 4 days", "time_partitions: 0 days", r"spark: time_partitions is '0 days'; expected a duration longer than 0"),
])
def test_bad_spark_settings_are_refused_naming_the_setting(tmp_path, old, new, message):
    repo_dir = copy_repo(ROOT / INTEGRATION, tmp_path)
    settings = (repo_dir / "settings.yaml").read_text()
    if "not_spark" in new:  # the whole section gone
        settings = settings[:settings.index(old) + 1]
    else:
        settings = settings.replace(old, new)
    (repo_dir / "settings.yaml").write_text(settings)
    with pytest.raises(ValueError, match=message):
        Repo(repo_dir, "feature_store.spark.yaml")
    Repo(repo_dir)  # the default configuration does not need the section


@pytest.mark.parametrize("old, new, message", [
    ("window_overlap: 1 day", "window_overlap: -1 day",
     r"settings.yaml line \d+: window_overlap is '-1 day'; expected a duration 0 or longer"),
    ("\nwindow_overlap: 1 day", "\n", r"settings.yaml has no window_overlap, which the `spark:` section needs"),
    ("batch_events: 1000", "batch_events: 0", r"settings.yaml line \d+: stream: batch_events is 0; expected a whole "
                                              r"number of 1 or more"),
    ("batch_wait: 20 milliseconds", "batch_wait: soon", r"stream: batch_wait is 'soon'; expected a duration"),
    ("allowed_lateness: 0 seconds", "allowed_lateness: -1 seconds", r"stream: allowed_lateness is '-1 seconds'; "
                                                                   r"expected a duration 0 or longer"),
    ("  group: driver_trip_features", "  groups: driver_trip_features", r"settings.yaml line \d+: unknown key 'groups' "
                                                                        r"under stream:; expected one of"),
])
def test_bad_window_and_stream_settings_are_refused_naming_the_setting(tmp_path, old, new, message):
    repo_dir = copy_repo(ROOT / INTEGRATION, tmp_path)
    edit(repo_dir / "settings.yaml", old, new)
    with pytest.raises(ValueError, match=message):
        Repo(repo_dir, "feature_store.spark.yaml")


def test_a_repo_without_settings_says_what_is_missing(tmp_path):
    (tmp_path / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    with pytest.raises(FileNotFoundError, match="settings.yaml does not exist; expected this repo's settings"):
        Repo(tmp_path)


def test_plan_writes_nothing_before_the_first_registration(tmp_path):
    repo = Repo(tiny_repo(tmp_path))
    dr = driver.Builder().with_modules(*repo.modules, feast_operations).with_config(repo.config).build()
    plan = dr.execute(["plan"], inputs=repo.inputs)["plan"]
    assert "Created feature view" in plan and "rider_stats" in plan
    assert not (tmp_path / "data").exists()


def test_the_progress_bar_shows_for_a_person_on_a_long_run_only(tmp_path, monkeypatch):
    class FakeRepo:
        project = "p"
        inputs = {"raw": tmp_path / "raw.parquet", "name": "x"}

    pd.DataFrame({"a": np.arange(script.PROGRESS_BAR_ROWS + 1)}).to_parquet(tmp_path / "raw.parquet")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert script.progress_bar(FakeRepo()) == []  # tests, CI, a pipe
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bars = script.progress_bar(FakeRepo())
    assert len(bars) == 1 and isinstance(bars[0], h_tqdm.ProgressBar)
    pd.DataFrame({"a": np.arange(10)}).to_parquet(tmp_path / "raw.parquet")
    assert script.progress_bar(FakeRepo()) == []  # a short run


def test_only_the_known_notices_are_hidden():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with known_notices_hidden():
            warnings.warn("On demand feature view is an experimental feature. This API ...", RuntimeWarning)
            warnings.warn("fetch_arrow_table() is deprecated, use to_arrow_table() instead.", DeprecationWarning)
            warnings.warn("The spark offline store is an experimental feature in alpha development.", RuntimeWarning)
            warnings.warn("The spark data source API is an experimental feature in alpha development.", RuntimeWarning)
            warnings.warn("Something about your data", RuntimeWarning)
            warnings.warn("fetch_arrow_table() is deprecated", RuntimeWarning)  # another category
    assert [str(w.message) for w in caught] == ["Something about your data", "fetch_arrow_table() is deprecated"]


def test_draw_check_fails_on_a_stale_picture(tmp_path):
    tiny_repo(tmp_path)
    result = run(["hamilton-feast", "draw", "--check"], cwd=tmp_path, expect_success=False)
    assert result.returncode == 1 and "dag.dot is not current: run `hamilton-feast draw`" in result.stderr
    run(["hamilton-feast", "draw"], cwd=tmp_path)
    run(["hamilton-feast", "draw", "--check"], cwd=tmp_path)
    assert (tmp_path / "dag.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "feast_objects.py").write_text(FEAST_OBJECTS.replace('"readers"', '"writers"') + "\n\ndef extra() -> int:\n    return 1\n")
    assert run(["hamilton-feast", "draw", "--check"], cwd=tmp_path, expect_success=False).returncode == 1


# --- atomic writes --------------------------------------------------------------------------


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic.replaced(target) as temporary:
            temporary.write_bytes(b"new, half")
            raise RuntimeError("half-way")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]
    with atomic.replaced(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_a_folder_is_replaced_whole_and_a_dead_writers_leftovers_are_removed(tmp_path):
    target = tmp_path / "table"
    target.mkdir()
    (target / "part-0.parquet").write_bytes(b"old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".table.tmp-{int(dead.stdout)}"
    leftover.mkdir()  # what a killed writer left
    (tmp_path / ".table.previous").mkdir()  # a killed swap's old folder, while the new one exists
    with atomic.replaced(target) as temporary:
        temporary.mkdir()
        (temporary / "part-1.parquet").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["part-1.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]
    # A swap killed between its two renames: the old folder aside, none in place; put back.
    target.rename(tmp_path / ".table.previous")
    assert atomic.restored(target).is_dir() and [p.name for p in target.iterdir()] == ["part-1.parquet"]


def test_a_failed_write_names_the_path_and_why(tmp_path):
    target = tmp_path / "table.parquet"
    with pytest.raises(ValueError, match=f"cannot write {target}: No such file or directory; the previous"):
        with atomic.replaced(target) as temporary:
            open(temporary.parent / "missing" / "file", "wb")


def test_killed_stops_a_command_that_never_reaches_its_moment(tmp_path):
    """The fault campaigns wait for a moment to kill at; one that never comes is an error naming
    the command, and the command does not outlive it."""
    marker = tmp_path / "still running"
    command = [sys.executable, "-c", f"import pathlib, time; time.sleep(2); pathlib.Path({str(marker)!r}).touch()"]
    with pytest.raises(TimeoutError, match=r"-c .* ran 0.3 s without reaching the moment to kill it"):
        killed(command, tmp_path, lambda _: False, timeout_s=0.3)
    time.sleep(2.5)
    assert not marker.exists(), "the command outlived the timeout"
    assert killed(command[:2] + ["pass"], tmp_path, lambda _: False) is None  # ended first
    assert killed(command, tmp_path, lambda elapsed: elapsed > 0.2 and "at 0.2 s") == "at 0.2 s"
