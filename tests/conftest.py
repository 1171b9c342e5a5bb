"""Shared helpers: temporary copies of the feature repos, running their commands, reading data."""

import hashlib
import importlib
import os
import socket
import time
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# How each repo registers its objects, run inside the repo folder (the README says the same).
APPLY_COMMANDS = {
    "default_feature_store": ["feast", "apply"],
    "simple_feature_store": [sys.executable, "apply.py"],
}
PLAN_COMMANDS = {
    "default_feature_store": ["feast", "plan"],
    "simple_feature_store": [sys.executable, "apply.py", "--plan"],
}


def run(
    command: list[str], cwd: Path, expect_success: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a command in `cwd` (with extra environment variables `env`); on an unexpected exit
    code, fail with everything it printed."""
    if command[0] == "feast":
        command = [str(Path(sys.executable).parent / "feast"), *command[1:]]
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=full_env)
    if (result.returncode == 0) != expect_success:
        pytest.fail(
            f"`{' '.join(command)}` in {cwd} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def copy_repo(name: str, destination: Path) -> Path:
    """A copy of a feature repo's code, without anything a run has written into it."""
    target = destination / name
    shutil.copytree(
        ROOT / name,
        target,
        ignore=shutil.ignore_patterns("data", "__pycache__", ".ipynb_checkpoints"),
    )
    return target


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder` except its data/ folder: the code a user keeps."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "data" not in path.relative_to(folder).parts
        and "__pycache__" not in path.parts
    }


# The integration repo's driver_trip_stats fields, in the view's order, by kind.
CALENDAR_FEATURES = ["day_of_week", "is_weekend", "month", "hour_of_day"]
PER_DRIVER_FEATURES = [
    "driver_trip_dist_mean_3h",
    "driver_trip_dist_max_3h",
    "driver_trip_dist_min_3h",
    "driver_trips_3h",
    "driver_trip_dist_mean_24h",
    "driver_trips_24h",
]
FEATURE_VIEW_FIELDS = [
    *CALENDAR_FEATURES,
    "trip_dist_pct_rank_3h_all_drivers",
    *PER_DRIVER_FEATURES,
]


def edit(path: Path, old: str, new: str) -> str:
    """Replace `old`, which must occur exactly once, by `new` in a file; return the original."""
    original = path.read_text()
    assert original.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(original.replace(old, new))
    return original


def generate_data(repo_dir: Path, *args: str) -> None:
    run([sys.executable, "generate_data.py", *args], cwd=repo_dir)


def read_parquet(repo_dir: Path, relative_path: str) -> pd.DataFrame:
    return pd.read_parquet(repo_dir / relative_path)


@contextmanager
def repo_modules(repo_dir: Path):
    """Import a repo's own modules (e.g. `dataflow`) in this process, then forget them again.

    The repos use the same module names, so each import starts from a clean slate.
    """
    names = {path.stem for path in repo_dir.glob("*.py")}

    def forget():
        for name in names:
            sys.modules.pop(name, None)

    forget()
    sys.path.insert(0, str(repo_dir))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(repo_dir))
        forget()


@pytest.fixture(scope="module")
def applied_repos(tmp_path_factory):
    """Each of the default and simple repos, copied, with fresh data, registered its own way.

    Yields {repo name: (path of the copy, hashes of its code files right after copying)}.
    """
    repos = {}
    for name, apply_command in APPLY_COMMANDS.items():
        repo_dir = copy_repo(name, tmp_path_factory.mktemp(name))
        hashes = file_hashes(repo_dir)
        generate_data(repo_dir)
        run(apply_command, cwd=repo_dir)
        repos[name] = (repo_dir, hashes)
    return repos


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, what: str, timeout_s: float = 60.0, process: subprocess.Popen | None = None):
    """Poll `ready()` until it returns true; fail, saying `what` never happened, after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else "(its output went to a log file)"
            pytest.fail(f"{what}: the process exited with {process.returncode}\n{output}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what}: not ready after {timeout_s} s")


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on 127.0.0.1 and a free port, for the session; yields "host:port".

    redis-server must be installed (scripts/test.sh installs Debian's package): without it this
    fails, it does not skip.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: sudo apt-get install redis-server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

    def answers_ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")

    try:
        wait_until(answers_ping, "redis-server", timeout_s=20, process=process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
