"""Helpers and fixtures for the tests of a feature repo, loaded by pytest as a plugin when this
package is installed: so a repo's tests/ work in a copied folder as in this project.

- `run`: a command in a folder, failing the test with everything it printed on a bad exit;
- `copy_repo`: a repo's code, without what a run wrote into it; `file_hashes` of its code;
- `edit`: one exact replacement in a file; `killed`: a command SIGKILLed at a chosen moment;
- `registry_objects`: a registry as comparable dictionaries;
- `start_redis`, fixture `redis_server`: a real redis-server on 127.0.0.1 (for the session);
- `Postgres`, fixture `postgres_server`: a real PostgreSQL cluster on 127.0.0.1 in a temporary
  folder (for the session), with a database per test (`new_database`);
- `feature_server`: `feast serve` on 127.0.0.1 with the serving settings of docs/serving.md
  (and `--metrics`);
- `prometheus_server`: a real Prometheus on 127.0.0.1, scraping and alerting as a config says;
- fixture `chromium`: a real headless Chromium, driven over its DevTools protocol (`Browser`);
- `spark_cluster`: a real Spark standalone cluster (a master, two workers) on 127.0.0.1.
"""

import base64
import contextlib
import dataclasses
import json

import hashlib
import itertools
import os
import shutil
import signal
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


def killed(command: list[str], cwd: Path, when, env: dict | None = None, log: Path | None = None,
           timeout_s: float = 600) -> str | None:
    """Start `command` in `cwd` (with extra environment variables `env`; its output appended to
    `log`, if given) and SIGKILL it as soon as `when(seconds since the start)` returns something
    true (a description of the moment), polling every millisecond; return that description, or
    None if the command ended first. A command still running, its moment not reached, after
    `timeout_s` is killed and a TimeoutError names it: a moment that never comes never hangs."""
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
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                raise TimeoutError(f"`{' '.join(map(str, command))}` in {cwd} ran {timeout_s:g} s without "
                                   "reaching the moment to kill it")
            moment = when(elapsed)
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


class Postgres:
    """A real PostgreSQL cluster of Debian's `postgresql` package, made by initdb in `folder` and
    listening on 127.0.0.1:`port` only (its socket in `folder` too), with trust authentication for
    the user `feast`. PostgreSQL refuses to run as root: as root, its commands run as the
    package's `postgres` user. `start()` returns when it accepts connections; `stop()` is a fast
    shutdown (as `systemctl stop` does); `new_database()` a database of its own for a test."""

    USER = "feast"

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = Path(folder), port
        self.bin = self.binaries()
        self.data, self.log = self.folder / "cluster", self.folder / "postgres.log"
        self._names = itertools.count(1)
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.command("initdb", "-D", str(self.data), "-U", self.USER, "--auth=trust", "-E", "UTF8", "--no-sync")

    @staticmethod
    def binaries() -> Path:
        """The folder of the server's programs: Debian keeps them in /usr/lib/postgresql/<version>/bin,
        off the PATH (the newest version installed), else wherever initdb is on the PATH."""
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        initdb = versions[-1] if versions else (Path(shutil.which("initdb")) if shutil.which("initdb") else None)
        if initdb is None:
            pytest.fail("PostgreSQL is not installed (no initdb): sudo apt-get install postgresql")
        return initdb.parent

    def command(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """One of the server's programs, as the `postgres` user when this is root."""
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, str(self.bin / program), *args], capture_output=True, text=True,
                                timeout=120)
        if check and result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else "(no log)"
            pytest.fail(f"PostgreSQL: {program} {' '.join(args)} exited {result.returncode}\n"
                        f"{result.stdout}{result.stderr}\n--- {self.log}\n{log[-3000:]}")
        return result

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c full_page_writes=off")
        self.command("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self.command("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def client(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A client program (psql, pg_dump, createdb...) connected as `feast` over TCP."""
        return self.command(program, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, *args, check=check)

    def new_database(self, prefix: str = "registry") -> str:
        """A new, empty database; its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.client("createdb", name)
        return name

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of a database, with psycopg 3 (the driver Feast's postgres extra installs)."""
        return f"postgresql+psycopg://{self.USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, database: str, statement: str) -> str:
        """The rows a statement returns, as psql prints them unaligned (one line each, `|` between values)."""
        return self.client("psql", "-d", database, "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c",
                           statement).stdout.strip()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL cluster (`Postgres`) for the session, on a free port, in a temporary
    folder of its own (pytest's are private to root, which the `postgres` user cannot enter).
    Debian's postgresql must be installed (scripts/test.sh installs it): without it this fails,
    it does not skip."""
    folder = Path(tempfile.mkdtemp(prefix="postgres-"))
    try:
        server = Postgres(folder, free_port())
        server.start()
        yield server
        server.command("pg_ctl", "-D", str(server.data), "-m", "immediate", "stop", check=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# The serving settings of docs/serving.md: -O, two workers, no access log, and a recycling limit (by
# default 1,000 requests, after which a worker's open connections are reset) raised far above
# any test's load.
SERVE_ARGUMENTS = ["--workers", "2", "--no-access-log", "--max-requests", "100000", "--max-requests-jitter", "10000"]


# Where `feast serve --metrics` serves its Prometheus metrics: Feast 0.67 has no option for it.
FEAST_METRICS_PORT = 8000


def port_is_free(port: int) -> bool:
    """Whether nothing listens on `port` (on any interface, as Feast's metrics server binds)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Feast's server binds
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def feature_server(repo_dir: Path, feature_store_yaml: str = "feature_store.yaml", env: dict | None = None,
                   metrics: bool = False):
    """`feast serve` on the repo, on 127.0.0.1 and a free port, with docs/serving.md's settings
    (and `--metrics`: Prometheus metrics on port FEAST_METRICS_PORT, which must be free); yields
    its base URL once /health (and the metrics) answer. Its output goes to data/feast_serve.log."""
    if metrics and not port_is_free(FEAST_METRICS_PORT):
        pytest.fail(f"port {FEAST_METRICS_PORT} is taken: `feast serve --metrics` always serves its metrics there "
                    "(feast 0.67); stop what listens on it")
    port = free_port()
    feast = str(Path(sys.executable).parent / "feast")
    log = open(repo_dir / "data" / "feast_serve.log", "w")
    process = subprocess.Popen(
        [feast, "--feature-store-yaml", feature_store_yaml, "serve", "--host", "127.0.0.1", "--port", str(port),
         *SERVE_ARGUMENTS, *(["--metrics"] if metrics else [])],
        cwd=repo_dir, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONOPTIMIZE": "1", **(env or {})},
    )
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(base_url + "/health", timeout=2) as response:
            return response.status == 200

    def metrics_served() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{FEAST_METRICS_PORT}/metrics", timeout=2) as response:
            return response.status == 200

    try:
        wait_until(healthy, "feast serve", timeout_s=90, process=process)
        if metrics:
            wait_until(metrics_served, "feast serve's metrics", timeout_s=30, process=process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@contextlib.contextmanager
def prometheus_server(config_file: Path, data_dir: Path):
    """A real Prometheus on 127.0.0.1 and a free port, configured by `config_file` (scrape
    targets, rule files), keeping its data in `data_dir`; yields its base URL once it is ready.
    Prometheus must be installed (scripts/test.sh installs Debian's package): without it this
    fails, it does not skip. Its output goes to `data_dir`/prometheus.log."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: sudo apt-get install prometheus")
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "prometheus.log", "w")
    process = subprocess.Popen(
        [binary, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(base_url + "/-/ready", timeout=2) as response:
            return response.status == 200

    try:
        wait_until(ready, "prometheus", timeout_s=60, process=process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)
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


# What docs/scale.md has a Spark worker started with, besides its folders: the folders of finished
# applications removed (here after a second, checked every second: the tests wait for it).
SPARK_WORKER_CLEANUP = ("-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval={interval} "
                        "-Dspark.worker.cleanup.appDataTtl={ttl}")


@dataclasses.dataclass
class SparkCluster:
    """A Spark standalone cluster on 127.0.0.1 (`spark_cluster`): its master's URL, its web page,
    each worker's folder (work/ holds the applications' folders, local/ their temporary files),
    and the folder hidden from the last worker, if one was and it could be."""

    master: str
    web: str
    workers: list[Path]
    hidden: Path | None

    def applications(self) -> dict:
        """The master's account of the applications: {"activeapps": [...], "completedapps": [...]}."""
        with urllib.request.urlopen(f"{self.web}/json/", timeout=5) as response:
            return json.load(response)


def _spark_class() -> str:
    spark_class = Path(sys.executable).parent / "spark-class"
    if not spark_class.is_file():
        pytest.fail(f"{spark_class} does not exist: install the spark extra (pip install '.[spark]')")
    if shutil.which("java") is None:
        pytest.fail("java is not installed: sudo apt-get install openjdk-17-jre-headless")
    return str(spark_class)


@contextlib.contextmanager
def spark_cluster(folder: Path, workers: int = 2, cores: int = 1, memory: str = "2g", hide: Path | None = None):
    """A real Spark standalone cluster from the installed pyspark's `spark-class`, bound to
    127.0.0.1: a master and `workers` workers of `cores` cores and `memory` each, started as
    docs/scale.md starts them (SPARK_LOCAL_DIRS, a work folder, SPARK_WORKER_CLEANUP), their
    folders and logs in `folder`; yields a SparkCluster once every worker is alive. With `hide`,
    the last worker runs in a mount namespace of its own where `hide` is an empty tmpfs: a host
    without the shared mount (this needs root with CAP_SYS_ADMIN; the cluster is started without
    it otherwise, and `hidden` is None). Fails, with the logs, if the cluster does not start."""
    spark_class, folder = _spark_class(), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    port, web_port = free_port(), free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    processes, logs, hidden = [], [], None

    def start(name: str, command: list[str], extra_env: dict) -> subprocess.Popen:
        log = open(folder / f"{name}.log", "w")
        logs.append(log)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**env, **extra_env},
                                   start_new_session=True)
        processes.append(process)
        return process

    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web_port}", [], None)
    try:
        start("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(port), "--webui-port", str(web_port)], {})
        for number in range(1, workers + 1):
            home = folder / f"worker{number}"
            (home / "work").mkdir(parents=True)
            (home / "local").mkdir()
            command = [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                       "--cores", str(cores), "--memory", memory, "--work-dir", str(home / "work"),
                       "--webui-port", "0", cluster.master]
            worker_env = {"SPARK_LOCAL_DIRS": str(home / "local"),
                          "SPARK_WORKER_OPTS": SPARK_WORKER_CLEANUP.format(interval=1, ttl=1)}
            if hide is not None and number == workers:
                Path(hide).mkdir(parents=True, exist_ok=True)
                probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
                if probe.returncode == 0:
                    command = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                               'mount -t tmpfs tmpfs "$0" && exec "$@"', str(hide), *command]
                    hidden = Path(hide)
            start(f"worker{number}", command, worker_env)
            cluster.workers.append(home)

        def alive() -> bool:
            if any(p.poll() is not None for p in processes):
                return True  # reported below
            return cluster.applications()["aliveworkers"] == workers

        wait_until(alive, "the Spark master and workers", timeout_s=120)
        stopped = [(p, log) for p, log in zip(processes, logs) if p.poll() is not None]
        if stopped:
            pytest.fail("a Spark process of the cluster exited: " + "\n".join(
                f"{Path(log.name).name}:\n{Path(log.name).read_text()[-3000:]}" for _, log in stopped))
        cluster.hidden = hidden
        yield cluster
    finally:
        for process in reversed(processes):  # workers first: each stops its executors
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in logs:
            log.close()
