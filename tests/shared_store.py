"""The integration repo run by a team, as the tests set it up: a database of the session's real
PostgreSQL for the registry (feature_store.postgres.yaml), a real Redis of its own, the team's
shared data folder, and clones of the repo whose data/ links to that folder."""

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cross_repo import INTEGRATION, ROOT

from hamilton_feast import sql_registry
from hamilton_feast.testing import Postgres, copy_repo, free_port, registry_objects, run, start_redis

YAML = "feature_store.postgres.yaml"
APPLY = ["apply.py", "--feature-store-yaml", YAML]


@contextlib.contextmanager
def environment(values: dict):
    """The process environment with `values` set while the block runs."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Team:
    postgres: Postgres
    database: str
    redis: str  # host:port
    shared: Path  # the team's data folder

    @property
    def env(self) -> dict:
        """What feature_store.postgres.yaml reads: the registry's URL, Redis's address."""
        return {"FEAST_REGISTRY_URL": self.postgres.url(self.database), "REDIS_CONNECTION_STRING": self.redis}

    def clone(self, destination: Path) -> Path:
        """A copy of the repo's code whose data/ is a link to the team's folder."""
        repo_dir = copy_repo(ROOT / INTEGRATION, destination)
        (repo_dir / "data").symlink_to(self.shared, target_is_directory=True)
        return repo_dir

    def run(self, command: list[str], repo_dir: Path, **options) -> subprocess.CompletedProcess:
        return run(command, repo_dir, env=self.env, **options)

    def url(self, database: str | None = None) -> str:
        return self.postgres.url(database or self.database)

    def registered(self, repo_dir: Path, database: str | None = None) -> dict:
        """{(kind, name): definition} of everything registered in the team's registry (or in
        another `database`), see testing.registry_objects."""
        with environment({**self.env, "FEAST_REGISTRY_URL": self.url(database)}):
            return registry_objects(repo_dir, fs_yaml_file=repo_dir / YAML)

    def query(self, statement: str, database: str | None = None) -> list[tuple]:
        """The rows of a statement, run on its own (autocommit) with psycopg."""
        import psycopg

        url = self.url(database).replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(url, autocommit=True) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def lock_holders(self, database: str | None = None) -> list[tuple]:
        """The sessions holding a registry's advisory lock: (application name, state, whether
        their transaction has written anything, that is, has a transaction id)."""
        return self.query(
            "SELECT a.application_name, a.state, a.backend_xid IS NOT NULL FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            f"AND l.classid = {sql_registry.LOCK_NAMESPACE}", database)


@contextlib.contextmanager
def team_of(postgres: Postgres, folder: Path):
    """A team: a new database on `postgres`, a Redis of its own, a shared folder in `folder`."""
    port = free_port()
    redis = start_redis(port)
    shared = folder / "shared"
    shared.mkdir()
    try:
        yield Team(postgres, postgres.new_database(), f"127.0.0.1:{port}", shared)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
