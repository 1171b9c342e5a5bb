"""The integration repo with its registry on a real PostgreSQL (feature_store.postgres.yaml, Feast's
SQL registry) and Redis online: what the file registry promises holds there, by the database's
own means. An apply is one transaction (Feast's SqlRegistry commits object by object), so a
killed one leaves the registry as it was; two at once wait on an advisory lock; a stopped
database is one line and changes nothing; a fresh clone that never applied checks and refreshes
against the shared registry; a pg_dump backup restores it.

One PostgreSQL cluster for the session (`postgres_server`), a database per team or test."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from cross_repo import INTEGRATION, ROOT
from shared_store import APPLY, YAML, environment, team_of
from sqlalchemy import event
from this_repo import CODE_EDIT, PROJECT, SMALL, VIEW

from feast.repo_operations import apply_total_with_repo_instance
from hamilton_feast import Repo, feast_operations, lineage, objects, online, sql_registry
from hamilton_feast.testing import copy_repo, edit, generate_data, killed, run, wait_until

pytestmark = pytest.mark.xdist_group("postgres")

HAMILTON_FEAST = ["hamilton-feast", "--feature-store-yaml", YAML]


@pytest.fixture(scope="module")
def team(postgres_server, tmp_path_factory):
    """The team's registry database, Redis and shared data folder, and the main branch's clone
    (`team.main`): sample data generated there, applied and materialized."""
    with team_of(postgres_server, tmp_path_factory.mktemp("team")) as team:
        team.main = team.clone(tmp_path_factory.mktemp("main"))
        generate_data(team.main, *SMALL)
        team.run([sys.executable, *APPLY, "--materialize"], team.main)
        yield team


def online_problems(team) -> list[str]:
    """What `hamilton-feast online --check` finds wrong with the online store, asked in this process."""
    with environment(team.env):
        store = feast_operations.feature_store(str(team.main), YAML)
        return [problem for health in online.check(store) for problem in health.problems]


def code_versions(team, repo_dir: Path) -> str:
    """The code versions the view is registered with."""
    return team.registered(repo_dir)[("featureViews", VIEW.name)]["spec"]["tags"][lineage.CODE_VERSIONS_TAG]


def count_write_transactions(engine, writes: list) -> None:
    """Append to `writes` each transaction of `engine` committed after an INSERT, UPDATE or DELETE."""
    def wrote(connection, cursor, statement, *_):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            connection.info["wrote"] = True

    def committed(connection):
        if connection.info.pop("wrote", False):
            writes.append(connection)

    event.listen(engine, "before_cursor_execute", wrote)
    event.listen(engine, "commit", committed)


def test_an_apply_is_one_transaction_where_feasts_sql_registry_commits_object_by_object(team):
    """The transactions that write, counted on the database connections: Feast's own apply of the
    repo's objects commits many; apply.py's registration (the `registered` node) commits once,
    and registers the same objects."""
    repo = Repo(team.main, YAML)
    found = {}
    for how in ("Feast's apply", "registered"):
        database = team.postgres.new_database()
        writes = []
        with environment({**team.env, "FEAST_REGISTRY_URL": team.url(database)}):
            store = feast_operations.feature_store(str(team.main), YAML)
            count_write_transactions(store.registry.write_engine, writes)
            contents = objects.repo_contents(repo.feast_objects().values(), store.project)
            if how == "registered":
                feast_operations.registered(store, contents)
            else:
                apply_total_with_repo_instance(store, store.project, store.registry, contents,
                                               skip_source_validation=False)
        found[how] = (len(writes), set(team.registered(team.main, database)))
    print(f"transactions that write, per apply: {', '.join(f'{how}: {n}' for how, (n, _) in found.items())}")
    assert found["Feast's apply"][0] > 10, found
    assert found["registered"][0] == 1, found
    assert found["Feast's apply"][1] == found["registered"][1]
    assert ("featureViews", VIEW.name) in found["registered"][1]


def test_a_killed_apply_leaves_the_registry_as_it_was_never_part_of_a_registration(team, tmp_path):
    """Each apply is killed with its whole registration written and not committed (the run
    waits there, sql_registry.PAUSE_BEFORE_COMMIT): the first one into an empty registry leaves
    nothing of it; one of a code edit leaves the previous registration. The next run succeeds,
    with nothing to clean up."""
    repo_dir = copy_repo(ROOT / INTEGRATION, tmp_path)  # data and a registry of its own
    generate_data(repo_dir, *SMALL)
    database = team.postgres.new_database()
    env = {**team.env, "FEAST_REGISTRY_URL": team.url(database)}
    apply = [sys.executable, *APPLY]
    seen = []

    def paused(_):
        holders = team.lock_holders(database)
        if holders and holders[0][0].endswith(sql_registry.PAUSED):
            seen.append(holders[0])
            return "paused before commit"
        return None

    def kill() -> str | None:
        return killed(apply, repo_dir, paused, env={**env, sql_registry.PAUSE_BEFORE_COMMIT: "1"})

    assert kill() == "paused before commit"
    # Nothing of the registration: only the empty project Feast's SqlRegistry adds for a store
    # that connects (here, when this reads it back).
    assert team.registered(repo_dir, database) == {("projects", "<the project>"): {"meta": {}, "spec": {}}}
    run(apply, repo_dir, env=env)
    before = team.registered(repo_dir, database)
    assert ("featureViews", VIEW.name) in before

    edit(repo_dir / CODE_EDIT.file, CODE_EDIT.old, CODE_EDIT.new)
    registered_code = json.loads(before[("featureViews", VIEW.name)]["spec"]["tags"][lineage.CODE_VERSIONS_TAG])
    assert Repo(repo_dir, YAML).lineage.code_versions(VIEW.name) != registered_code  # the apply would change it
    assert kill() == "paused before commit"
    assert team.registered(repo_dir, database) == before
    # At each kill the run held the lock, inside its transaction, which had written.
    assert [(state, written) for _, state, written in seen] == [("idle in transaction", True)] * 2, seen
    assert team.lock_holders(database) == []


def test_two_applies_at_once_wait_for_each_other_on_the_database(team, tmp_path):
    """Both runs compute at once; registering and loading wait for the registry's advisory
    lock, held here until both are waiting, so that they meet there every time."""
    apply = [sys.executable, *APPLY, "--materialize"]
    logs = [tmp_path / f"apply{i}.log" for i in range(2)]
    with psycopg.connect(team.url().replace("postgresql+psycopg", "postgresql")) as holder:
        holder.execute("SELECT set_config('application_name', 'the test', false)")
        holder.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                       (sql_registry.LOCK_NAMESPACE, sql_registry.lock_key(PROJECT)))
        processes = [subprocess.Popen(apply, cwd=team.main, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                      env={**os.environ, **team.env}) for log in logs]
        wait_until(lambda: all(f"Waiting for the test to finish writing the registry of {PROJECT}" in log.read_text()
                               for log in logs), "both applies waiting for the registry", timeout_s=300)
        holder.commit()  # the lock goes with the transaction
    exit_codes = [process.wait(timeout=600) for process in processes]
    assert exit_codes == [0, 0], [log.read_text() for log in logs]
    assert team.lock_holders() == []
    assert online_problems(team) == []


def test_a_stopped_database_is_one_clear_line_and_changes_nothing(team):
    """apply.py stops before it computes anything (the feature table is the same file), the
    change check cannot tell; each says so in one line naming the database; the registry is
    as it was once the database is back."""
    table = team.shared / Path(VIEW.table).name
    before, saved = team.registered(team.main), table.stat()
    commands = {"apply": [sys.executable, *APPLY, "--materialize"],
                "check": [str(Path(sys.executable).parent / "hamilton-feast"), *HAMILTON_FEAST[1:], "changes", "--check"]}
    team.postgres.stop()
    try:  # both at once
        processes = {name: subprocess.Popen(command, cwd=team.main, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True, env={**os.environ, **team.env})
                     for name, command in commands.items()}
        results = {name: (process.wait(timeout=600), *process.communicate()) for name, process in processes.items()}
    finally:
        team.postgres.start()
    outcome = {"apply": "nothing was registered", "check": "cannot tell what changed"}
    for name, (code, _, stderr) in results.items():
        assert code == 1, (name, stderr)
        assert stderr.strip() == (
            f"error: {outcome[name]}: the registry database {team.url()} cannot be reached: connection failed: "
            f'connection to server at "127.0.0.1", port {team.postgres.port} failed: Connection refused'), stderr
    after = table.stat()
    assert (after.st_ino, after.st_mtime_ns) == (saved.st_ino, saved.st_mtime_ns)  # not even recomputed
    assert team.registered(team.main) == before


def test_feast_apply_is_refused_on_the_sql_registry_and_writes_nothing(team):
    before = team.registered(team.main)
    result = team.run(["feast", "--feature-store-yaml", YAML, "apply"], team.main, expect_success=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: nothing was registered: `feast apply` would write the SQL registry of {YAML} object by object, each "
        "in a transaction of its own, so that a killed run leaves part of a registration; run `python apply.py "
        f"--feature-store-yaml {YAML}`, which registers in one transaction")
    assert team.registered(team.main) == before


def test_a_fresh_clone_that_never_applied_checks_and_refreshes_against_the_shared_registry(team, tmp_path):
    """A clone with nothing but the code and the link to the team's folder: the change check and
    the online check answer from the shared registry; a refresh registers its edit there."""
    clone = team.clone(tmp_path)
    hamilton_feast = [str(Path(sys.executable).parent / "hamilton-feast"), *HAMILTON_FEAST[1:]]
    checks = [subprocess.Popen([*hamilton_feast, *check], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, **team.env})
              for check in (["changes", "--check"], ["online", "--check"])]  # both at once
    (changes, _), (online_check, _) = [check.communicate(timeout=600) for check in checks]
    assert [check.returncode for check in checks] == [0, 0], (changes, online_check)
    assert "nothing changed." in changes and "ok (" in online_check
    before = code_versions(team, clone)
    edit(clone / CODE_EDIT.file, CODE_EDIT.old, CODE_EDIT.new)
    output = team.run([*HAMILTON_FEAST, "changes", "--refresh"], clone).stdout
    assert f"{VIEW.name}: changed" in output and "Recomputing: saved_" in output
    assert f"Re-materializing {VIEW.name}" in output
    registered = code_versions(team, clone)
    assert registered != before
    assert json.loads(registered) == Repo(clone, YAML).lineage.code_versions(VIEW.name)


def test_a_registry_restored_from_pg_dump_reads_as_when_it_was_backed_up(team):
    backup = team.postgres.folder / f"{team.database}.dump"
    team.postgres.client("pg_dump", "--format=custom", f"--file={backup}", team.database)
    before = team.registered(team.main)
    for table in ("feature_views", "feature_services"):  # a bad manual edit
        team.query(f"DELETE FROM {table}")
    assert team.registered(team.main) != before
    team.postgres.client("pg_restore", "--clean", "--if-exists", f"--dbname={team.database}", str(backup))
    assert team.registered(team.main) == before
    assert online_problems(team) == []
