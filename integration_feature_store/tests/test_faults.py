"""Faults while the repo is written: a killed apply or refresh (SIGKILL at chosen moments, the
save among them), two applies at once, a corrupted registry, and a data folder that cannot be
written. Whatever happens, what Feast reads stays whole: the previous version or the new one."""

import hashlib
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from this_repo import CODE_EDIT, LARGE, MEDIUM, REGISTRY, REPO, SERVICES, SMALL, VIEW, VIEWS, state_hashes

from feast import FeatureStore
from hamilton_feast import atomic
from hamilton_feast.testing import copy_repo, edit, generate_data, killed, run, wait_until

TABLE = VIEW.table


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(repo_dir: Path) -> list[str]:
    return sorted(p.name for p in (repo_dir / "data").iterdir() if ".tmp-" in p.name)


def saving(table_or_registry: str, repo_dir: Path):
    """A kill moment: while the temporary of the table or the registry exists (mid-write); the
    command is run with the write paused there (atomic.PAUSE_BEFORE_RENAME), so it is caught."""
    name = Path(table_or_registry).name
    return lambda _: f"writing {name}" if any(t.startswith(f".{name}.tmp-") for t in temporaries(repo_dir)) else None


def paused_at(table_or_registry: str) -> dict:
    return {atomic.PAUSE_BEFORE_RENAME: Path(table_or_registry).name}


def after(seconds: float):
    return lambda elapsed: f"after {seconds:.1f} s" if elapsed >= seconds else None


def assert_whole(repo_dir: Path) -> str:
    """The feature table and the registry can be read in full; return the table's digest."""
    table = pd.read_parquet(repo_dir / TABLE)
    assert len(table) > 0
    store = FeatureStore(repo_path=str(repo_dir))
    assert {view.name for view in store.list_feature_views()} == {view.name for view in VIEWS}
    assert {service.name for service in store.list_feature_services()} == set(SERVICES)
    return digest(repo_dir / TABLE)


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory):
    """A copy applied and materialized on a large sample (its table takes a moment to save)."""
    repo_dir = copy_repo(REPO, tmp_path_factory.mktemp("faults"))
    generate_data(repo_dir, *LARGE)
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    return repo_dir


def test_a_killed_apply_leaves_the_previous_table_and_registry_whole(big_repo):
    previous = assert_whole(big_repo)
    generate_data(big_repo, *LARGE, "--seed", "7")
    apply = [sys.executable, "apply.py", "--materialize"]
    moments = [(saving(TABLE, big_repo), paused_at(TABLE)), (saving(REGISTRY, big_repo), paused_at(REGISTRY)),
               (after(2.0), {}), (after(6.0), {})]
    seen, digests = [], set()
    for moment, env in moments:
        seen.append(killed(apply, big_repo, moment, env=env))
        digests.add(assert_whole(big_repo))
    run(apply, cwd=big_repo)  # the next run succeeds, and cleans up what the kills left
    new = assert_whole(big_repo)
    assert temporaries(big_repo) == []
    # Each kill left the previous table or the whole new one, nothing else.
    assert digests <= {previous, new} and new != previous
    assert seen[:2] == [f"writing {Path(TABLE).name}", f"writing {Path(REGISTRY).name}"], seen


def test_a_killed_refresh_leaves_the_previous_table_whole(big_repo):
    previous = assert_whole(big_repo)
    edit(big_repo / CODE_EDIT.file, CODE_EDIT.old, CODE_EDIT.new)
    refresh = [str(Path(sys.executable).parent / "hamilton-feast"), "changes", "--refresh"]
    assert killed(refresh, big_repo, saving(TABLE, big_repo), env=paused_at(TABLE)) == f"writing {Path(TABLE).name}"
    assert assert_whole(big_repo) == previous
    output = run(refresh, cwd=big_repo).stdout
    assert "Recomputing: saved_" in output
    assert assert_whole(big_repo) != previous
    assert temporaries(big_repo) == []


# --- two writers, a broken registry, a data folder that cannot be written ------------------


def test_two_applies_at_once_both_succeed_one_after_the_other(tmp_path):
    """Both runs compute at once; registering and materializing wait for the registry's lock,
    held here until both are waiting, so that they meet there every time."""
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL)
    apply = [sys.executable, "apply.py", "--materialize"]
    logs = [tmp_path / f"apply{i}.log" for i in range(2)]
    with atomic.locked(repo_dir / REGISTRY):
        processes = [subprocess.Popen(apply, cwd=repo_dir, stdout=log.open("w"), stderr=subprocess.STDOUT)
                     for log in logs]
        wait_until(lambda: all("Waiting for process" in log.read_text() for log in logs),
                   "both applies waiting for the registry", timeout_s=300)
    exit_codes = [process.wait(timeout=600) for process in processes]
    assert exit_codes == [0, 0], [log.read_text() for log in logs]
    assert_whole(repo_dir)
    assert temporaries(repo_dir) == []
    store = FeatureStore(repo_path=str(repo_dir))
    assert all(store.get_feature_view(view.name).materialization_intervals for view in VIEWS)
    assert "ok (" in run(["hamilton-feast", "online", "--check"], repo_dir).stdout


def test_a_damaged_registry_is_an_error_naming_it_never_an_empty_store(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *SMALL)
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    registry = repo_dir / REGISTRY
    backup = tmp_path / "registry.backup"
    shutil.copy(registry, backup)  # the operator's backup: from before the next apply
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)  # records one more load
    good = registry.read_bytes()
    assert good != backup.read_bytes()
    damages = {"truncated": good[: len(good) // 2], "empty": b"", "overwritten": b"\x00garbage" + good[9:]}
    commands = {"apply": [sys.executable, "apply.py"], "check": ["hamilton-feast", "online", "--check"]}
    for damage, data in damages.items():
        registry.write_bytes(data)
        for command in [commands["apply"]] + ([commands["check"]] if damage == "truncated" else []):
            result = run(command, repo_dir, expect_success=False)
            assert result.returncode == 1, (damage, command, result.stdout)
            assert f"the registry {registry} is damaged" in result.stderr or \
                f"the registry {REGISTRY} is damaged" in result.stderr, (damage, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        with pytest.raises(ValueError, match="is damaged"):
            FeatureStore(repo_path=str(repo_dir)).list_feature_views()
        assert registry.read_bytes() == data  # left for the operator to restore or delete
    # The documented recoveries: the older backup copied back reads as before (and the next
    # apply brings it up to date); or delete it and apply again.
    shutil.copy(backup, registry)
    assert_whole(repo_dir)
    assert "ok (" in run(["hamilton-feast", "online", "--check"], repo_dir).stdout
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    assert "ok (" in run(["hamilton-feast", "online", "--check"], repo_dir).stdout
    registry.unlink()
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    assert_whole(repo_dir)
    assert "ok (" in run(["hamilton-feast", "online", "--check"], repo_dir).stdout


def without_root_privileges() -> list[str]:
    """A command prefix that makes root obey file permissions (as every other user does)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture
def applied_small(tmp_path):
    repo_dir = copy_repo(REPO, tmp_path)
    generate_data(repo_dir, *MEDIUM)
    run([sys.executable, "apply.py", "--materialize"], cwd=repo_dir)
    generate_data(repo_dir, *MEDIUM, "--seed", "9")
    return repo_dir


def test_a_data_folder_without_write_permission_is_a_clear_error_and_changes_nothing(applied_small):
    before = state_hashes(applied_small)
    data = applied_small / "data"
    data.chmod(0o555)
    try:
        result = run([*without_root_privileges(), sys.executable, "apply.py", "--materialize"], applied_small,
                     expect_success=False)
    finally:
        data.chmod(0o755)
    assert result.returncode == 1
    assert f"cannot write {applied_small / TABLE}: Permission denied" in result.stderr
    assert result.stderr.startswith("error: nothing was registered: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert state_hashes(applied_small) == before and temporaries(applied_small) == []


def test_no_space_for_the_table_is_a_clear_error_and_changes_nothing(applied_small):
    """The system refuses the table's bytes part-way, as a full disk does (here: a file size
    limit, RLIMIT_FSIZE, which needs no privileges; Python then gets EFBIG instead of ENOSPC)."""
    before = state_hashes(applied_small)
    limit = os.path.getsize(applied_small / TABLE) // 3

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, "apply.py", "--materialize"], cwd=applied_small, capture_output=True,
                            text=True, preexec_fn=limited)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot write {applied_small / TABLE}: " in result.stderr, result.stderr
    assert "File too large" in result.stderr
    assert "the previous version is unchanged" in result.stderr and "Traceback" not in result.stderr
    assert state_hashes(applied_small) == before and temporaries(applied_small) == []
    run([sys.executable, "apply.py", "--materialize"], cwd=applied_small)  # with room again: fine
    assert state_hashes(applied_small)[TABLE] != before[TABLE]
