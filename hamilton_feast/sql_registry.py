"""Feast's SQL registry (on PostgreSQL) with the file registry's guarantees, by the database's
own means. A repo selects it in a feature_store.yaml:

    registry:
        registry_type: sql
        path: ${FEAST_REGISTRY_URL}     # postgresql+psycopg://user:password@host:5432/feast

Feast 0.67's SqlRegistry commits each object on its own: an apply is an entity, then a source,
then each view... each in a transaction of its own, so a killed apply leaves part of a
registration; a killed load leaves a view in state MATERIALIZING. Here:

- `one_transaction(store)`: the registry's reads and writes while a block runs (an apply, a
  load) go through one connection, in one transaction committed when the block ends (each of
  Feast's own transactions a savepoint inside it). A killed run's transaction is rolled back by
  the server: the registry is the previous version or the new one, never part of one.
  The block first takes a PostgreSQL advisory lock on the project, released with the
  transaction (or the killed run's connection): a second writer waits, saying for whom.
- `connected(store)`: the store with its registry connected now, before anything is computed:
  a database that cannot be reached, or an unset variable in its URL, is one line naming it.
"""

import contextlib
import hashlib
import os
import socket
import sys
import time

from sqlalchemy import exc, text
from sqlalchemy.engine import make_url

from feast import FeatureStore

# The advisory lock of a project's registry: (this namespace, a number from the project's name).
LOCK_NAMESPACE = 0x48465F52  # "HF_R"
# Set to anything: a run waits a minute before it commits, so that the fault tests can kill it
# with its whole registration written and not committed. Never set in normal use.
PAUSE_BEFORE_COMMIT = "HAMILTON_FEAST_PAUSE_BEFORE_COMMIT"
PAUSED = "paused before commit"  # in the run's application_name meanwhile


def is_sql(store: FeatureStore) -> bool:
    return store.config.registry.registry_type == "sql"


def where(store: FeatureStore) -> str:
    """The registry database's URL, without its password."""
    try:
        return make_url(store.config.registry.path).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return store.config.registry.path


def _reason(error: exc.SQLAlchemyError) -> str:
    """The database driver's own words, first line only (SQLAlchemy adds its links below)."""
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


def connected(store: FeatureStore) -> FeatureStore:
    """The store, its SQL registry connected now (Feast connects when it is first used): an
    error of one line when its URL has an unset variable or the database cannot be reached."""
    if not is_sql(store):
        return store
    path = store.config.registry.path
    if "${" in path:  # Feast leaves a variable it cannot expand as written
        variable = path[path.index("${") + 2:].split("}")[0]
        raise ValueError(f"the registry's path is {path}, but {variable} is not set; expected the registry "
                         "database's URL, such as postgresql+psycopg://user:password@host:5432/feast")
    try:
        store.registry  # noqa: B018 (Feast's SqlRegistry connects, and creates its tables, here)
    except exc.SQLAlchemyError as error:
        raise ValueError(f"the registry database {where(store)} cannot be reached: {_reason(error)}") from None
    return store


class _OneTransaction:
    """Stands in for the registry's engines: each `begin()` is a savepoint of one transaction."""

    def __init__(self, connection):
        self.connection = connection

    @contextlib.contextmanager
    def begin(self):
        with self.connection.begin_nested():
            yield self.connection


def lock_key(project: str) -> int:
    return int.from_bytes(hashlib.sha256(project.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _take_lock(connection, project: str) -> None:
    """The project's advisory lock, for this transaction; waiting, saying for whom, while
    another run holds it."""
    key = {"namespace": LOCK_NAMESPACE, "key": lock_key(project)}
    if connection.execute(text("SELECT pg_try_advisory_xact_lock(:namespace, :key)"), key).scalar():
        return
    holder = connection.execute(text(
        "SELECT coalesce(nullif(a.application_name, ''), 'session ' || a.pid) FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid = :namespace AND l.objid = :key AND l.objsubid = 2"), key).scalar()
    print(f"Waiting for {holder or 'another run'} to finish writing the registry of {project} ...",
          file=sys.stderr, flush=True)
    connection.execute(text("SELECT pg_advisory_xact_lock(:namespace, :key)"), key)


def _name(connection, name: str) -> None:
    """What this run shows as in pg_stat_activity (and in another writer's waiting line)."""
    connection.execute(text("SELECT set_config('application_name', :name, true)"), {"name": name})


@contextlib.contextmanager
def one_transaction(store: FeatureStore):
    """The block's registry reads and writes in one transaction, one run at a time (see above);
    a database lost meanwhile is an error of one line."""
    registry = connected(store).registry
    if isinstance(registry.write_engine, _OneTransaction):  # already inside one (a load within an apply)
        yield
        return
    engines = registry.write_engine, registry.read_engine
    cache = registry.cached_registry_proto, registry.cached_registry_proto_created
    try:
        with registry.write_engine.connect() as connection, connection.begin():
            me = f"hamilton-feast (process {os.getpid()} on {socket.gethostname()})"
            _name(connection, me)
            _take_lock(connection, store.project)
            registry.write_engine = registry.read_engine = _OneTransaction(connection)
            try:
                yield
                if os.environ.get(PAUSE_BEFORE_COMMIT):  # the fault tests' moment to kill
                    _name(connection, f"{me} {PAUSED}")
                    time.sleep(60)
            finally:
                registry.write_engine, registry.read_engine = engines
    except exc.OperationalError as error:
        registry.cached_registry_proto, registry.cached_registry_proto_created = cache
        raise ValueError(f"the registry database {where(store)} failed during the run: {_reason(error)}; run it "
                         "again once the database is back (what was not committed was rolled back)") from None
    except BaseException:
        registry.cached_registry_proto, registry.cached_registry_proto_created = cache  # what is committed
        raise
    registry.refresh()
