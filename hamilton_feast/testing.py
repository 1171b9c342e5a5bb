"""Helpers and fixtures for the tests of a feature repo, loaded by pytest as a plugin when this
package is installed: so a repo's tests/ work in a copied folder as in this project.

- `run`: a command in a folder, failing the test with everything it printed on a bad exit;
- `copy_repo`: a repo's code, without what a run wrote into it; `file_hashes` of its code;
- `edit`: one exact replacement in a file; `killed`: a command SIGKILLed at a chosen moment;
- `registry_objects`: a registry as comparable dictionaries;
- `start_redis`, fixture `redis_server`: a real redis-server on 127.0.0.1 (for the session);
- `feature_server`: `feast serve` on 127.0.0.1 with the serving settings of docs/serving.md;
- fixture `chromium`: a real headless Chromium, driven over its DevTools protocol (`Browser`).
"""

import base64
import contextlib
import json

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import pytest

# Fields that differ between two registrations of the same definitions and say nothing about them.
BOOKKEEPING_FIELDS = {"createdTimestamp", "lastUpdatedTimestamp", "project", "projectId"}
# An on-demand UDF as code: its text, its pickled bytes and its function name.
UDF_CODE_FIELDS = {"body", "bodyText", "name"}
REGISTRY_LISTS = [
    "projects", "entities", "dataSources", "featureViews", "onDemandFeatureViews", "labelViews",
    "featureServices", "streamFeatureViews", "permissions",
]


def run(
    command: list[str], cwd: Path, expect_success: bool = True, env: dict | None = None, timeout_s: float = 1800
) -> subprocess.CompletedProcess:
    """Run a command in `cwd` (with extra environment variables `env`); on an unexpected exit
    code, fail with everything it printed; a command still running after `timeout_s` (a server
    that should have refused to start) is killed and fails the test. `feast` and `hamilton-feast`
    are this Python's."""
    if command[0] in ("feast", "hamilton-feast"):
        command = [str(Path(sys.executable).parent / command[0]), *command[1:]]
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout_s
    )
    if (result.returncode == 0) != expect_success:
        pytest.fail(
            f"`{' '.join(map(str, command))}` in {cwd} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def killed(command: list[str], cwd: Path, when, env: dict | None = None, log: Path | None = None) -> str | None:
    """Start `command` in `cwd` (with extra environment variables `env`; its output appended to
    `log`, if given) and SIGKILL it as soon as `when(seconds since the start)` returns something
    true (a description of the moment), polling every millisecond; return that description, or
    None if the command ended first."""
    output = open(log, "a") if log else subprocess.DEVNULL
    try:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT if log else output,
                                   env={**os.environ, **(env or {})})
    finally:
        if log:
            output.close()
    started = time.monotonic()
    try:
        while process.poll() is None:
            moment = when(time.monotonic() - started)
            if moment:
                process.kill()
                process.wait()
                return moment
            time.sleep(0.001)
        return None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def copy_repo(repo_dir: Path, destination: Path) -> Path:
    """A copy of a feature repo's code in `destination`, without anything a run wrote into it."""
    target = Path(destination) / Path(repo_dir).name
    shutil.copytree(
        repo_dir, target,
        ignore=shutil.ignore_patterns("data", "__pycache__", ".ipynb_checkpoints", ".pytest_cache"),
    )
    return target


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder` except its data/ folder: the code a user keeps."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
        and "data" not in path.relative_to(folder).parts
        and "__pycache__" not in path.parts
    }


def edit(path: Path, old: str, new: str) -> str:
    """Replace `old`, which must occur exactly once, by `new` in a file; return the original."""
    original = path.read_text()
    assert original.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(original.replace(old, new))
    return original


def generate_data(repo_dir: Path, *args: str) -> None:
    run([sys.executable, "generate_data.py", *args], cwd=repo_dir)


def _strip(value, ignore_udf_code: bool):
    if isinstance(value, dict):
        stripped = {}
        for key, item in value.items():
            if key in BOOKKEEPING_FIELDS:
                continue
            if key == "userDefinedFunction" and ignore_udf_code:
                item = {k: v for k, v in item.items() if k not in UDF_CODE_FIELDS}
            stripped[key] = _strip(item, ignore_udf_code)
        return stripped
    if isinstance(value, list):
        return [_strip(item, ignore_udf_code) for item in value]
    return value


def registry_objects(repo_path, ignore_udf_code: bool = False, fs_yaml_file=None) -> dict:
    """{(kind, name): definition} for every object in the repo's registry. Ignored, because they
    differ between two registrations of the same definitions: created and updated timestamps,
    the project a definition belongs to and the project's own name; with `ignore_udf_code`,
    also an on-demand view's UDF text, pickled bytes and function name."""
    from google.protobuf.json_format import MessageToDict

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo_path), fs_yaml_file=fs_yaml_file and Path(fs_yaml_file))
    registry = MessageToDict(store.registry.proto())
    found = {}
    for kind in REGISTRY_LISTS:
        for entry in registry.get(kind, []):
            if kind == "projects":
                entry["spec"].pop("name")  # each repo's project is named after its folder
                name = "<the project>"
            else:
                name = entry.get("spec", entry)["name"]
            found[(kind, name)] = _strip(entry, ignore_udf_code)
    return found


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


def start_redis(port: int) -> subprocess.Popen:
    """A real redis-server on 127.0.0.1:`port`, empty and without persistence (so a restart is
    empty), answering PING when returned. redis-server must be installed (scripts/test.sh
    installs Debian's package): without it this fails, it does not skip."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: sudo apt-get install redis-server")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

    def answers_ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")

    wait_until(answers_ping, "redis-server", timeout_s=20, process=process)
    return process


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server (`start_redis`) for the session; yields "host:port". Each test that
    writes to it should start with FLUSHALL."""
    port = free_port()
    process = start_redis(port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


# The serving settings of docs/serving.md: -O, two workers, no access log, and a recycling limit (by
# default 1,000 requests, after which a worker's open connections are reset) raised far above
# any test's load.
SERVE_ARGUMENTS = ["--workers", "2", "--no-access-log", "--max-requests", "100000", "--max-requests-jitter", "10000"]


@contextlib.contextmanager
def feature_server(repo_dir: Path, feature_store_yaml: str = "feature_store.yaml", env: dict | None = None):
    """`feast serve` on the repo, on 127.0.0.1 and a free port, with docs/serving.md's settings;
    yields its base URL once /health answers. Its output goes to data/feast_serve.log."""
    port = free_port()
    feast = str(Path(sys.executable).parent / "feast")
    log = open(repo_dir / "data" / "feast_serve.log", "w")
    process = subprocess.Popen(
        [feast, "--feature-store-yaml", feature_store_yaml, "serve", "--host", "127.0.0.1", "--port", str(port),
         *SERVE_ARGUMENTS],
        cwd=repo_dir, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONOPTIMIZE": "1", **(env or {})},
    )
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(base_url + "/health", timeout=2) as response:
            return response.status == 200

    try:
        wait_until(healthy, "feast serve", timeout_s=90, process=process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


class Browser:
    """Debian's chromium, headless, with its DevTools protocol on 127.0.0.1: one page that opens
    addresses, answers JavaScript expressions and takes screenshots, as a user's browser renders."""

    def __init__(self, binary: str, profile_dir: Path, width: int = 1400, height: int = 900):
        import websocket  # websocket-client, a test extra

        self.size = (width, height)
        arguments = [
            binary, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={profile_dir}", f"--window-size={width},{height}", "about:blank",
        ]
        if os.geteuid() == 0:
            arguments.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._log = open(profile_dir / "chromium.log", "w")  # a file, so that a full pipe never blocks it
        self.process = subprocess.Popen(arguments, stdout=self._log, stderr=subprocess.STDOUT)
        port_file = profile_dir / "DevToolsActivePort"
        wait_until(port_file.exists, "chromium's DevTools port", timeout_s=60, process=self.process)
        wait_until(lambda: port_file.read_text().count("\n") >= 1, "chromium's DevTools port", timeout_s=10)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self._socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self._next_id = 0
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params) -> dict:
        """One DevTools command; its result, skipping the events that arrive meanwhile."""
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"chromium: {method} failed: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"chromium: {expression!r} raised {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def open(self, url: str, showing: list[str], timeout_s: float = 60.0) -> str:
        """Go to `url` and wait until the page's visible text shows every string in `showing`;
        return that text. Fails the test, with what the page showed, if they never appear."""
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if all(item in text for item in showing):
                return text
            time.sleep(0.25)
        missing = [item for item in showing if item not in text]
        pytest.fail(f"{url} never showed {missing} in {timeout_s} s; it showed:\n{text[:2000]}")

    def links(self) -> set[str]:
        """The addresses of the page's links, as written in their href."""
        return set(self.evaluate("Array.from(document.querySelectorAll('a[href]'), a => a.getAttribute('href'))"))

    def screenshot(self, path: Path) -> Path:
        """The page as a PNG file, the size of the window."""
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self):
        try:
            self._socket.close()
        finally:
            self.process.terminate()
            self.process.wait(timeout=20)
            self._log.close()


def png_summary(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of its pixel rows) of a PNG file: an image of one
    colour has very few distinct bytes; a rendered page has many."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    pixels, position = b"", 8
    while position < len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        if data[position + 4:position + 8] == b"IDAT":
            pixels += data[position + 8:position + 8 + length]
        position += 12 + length
    return width, height, len(set(zlib.decompress(pixels)))


@pytest.fixture(scope="session")
def chromium():
    """A real headless Chromium for the session (`Browser`). Debian's chromium must be installed
    (scripts/test.sh installs it): without it this fails, it does not skip."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed: sudo apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        browser = Browser(binary, Path(profile))
        try:
            yield browser
        finally:
            browser.close()
