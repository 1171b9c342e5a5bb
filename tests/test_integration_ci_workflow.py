"""The integration repo's GitHub Actions workflow (.github/workflows/features.yml in the folder, so
a copy that becomes its own repository has it), run as Actions would run it: its own `run:`
steps, read from the YAML, for each event, in checkouts of a temporary git repository, with the
secrets it names pointing at a real PostgreSQL registry and a real Redis, and the team's data
folder a temporary one. The steps it does not run: `actions/checkout` (a `git clone` here) and
the install step (this test's environment stands in).

One story: main deployed and a model trained on its service; a branch that edits a feature is
reviewed (exit 2, naming the views, the service and the model); merged, it is registered and
loaded, the rows loaded before the merge reloaded with the new code's values; the hourly run
finds the online store fresh."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cross_repo import INTEGRATION, ROOT
from shared_store import YAML, environment, team_of
from this_repo import CODE_EDIT, MODEL_DATA, VIEW

from hamilton_feast import Repo, feast_operations, lineage
from hamilton_feast.testing import copy_repo, edit, generate_data, run

pytestmark = pytest.mark.xdist_group("postgres")

WORKFLOW = Path(".github/workflows/features.yml")  # in the repo's folder
EXPRESSION = re.compile(r"\$\{\{\s*(secrets|vars)\.(\w+)\s*\}\}")
EVENT_CONDITION = re.compile(r"github\.event_name == '(\w+)'")
MODEL, SERVICE = "trip_rating_model", "trip_rating_model_v1"


def workflow() -> dict:
    return yaml.safe_load((ROOT / INTEGRATION / WORKFLOW).read_text())


def run_steps(event: str) -> list[dict]:
    """The `run:` steps Actions runs on `event` (those without a condition, or whose condition is
    that event), but the install step."""
    (job,) = workflow()["jobs"].values()
    steps = []
    for step in job["steps"]:
        condition = step.get("if")
        if condition is not None:
            match = EVENT_CONDITION.fullmatch(condition)
            assert match, f"a condition this test cannot read: {condition}"
            if match[1] != event:
                continue
        if "uses" in step:
            assert step["uses"].startswith("actions/checkout@"), step
        elif step.get("id") != "install":
            steps.append(step)
    return steps


def expanded(text: str, secrets: dict, variables: dict) -> str:
    """The text with its ${{ secrets.X }} and ${{ vars.X }} put in; any other expression fails."""
    text = EXPRESSION.sub(lambda m: str((secrets if m[1] == "secrets" else variables)[m[2]]), text)
    assert "${{" not in text, f"an expression this test cannot put in: {text}"
    return text


def run_job(event: str, checkout: Path, team, runner: Path) -> tuple[int, str, str]:
    """The job's steps for `event` in `checkout`, each by `bash --noprofile --norc -eo pipefail`
    as Actions runs `shell: bash`, stopping at the first that fails: (its exit code or 0, all
    they printed, the job's summary)."""
    assert workflow()["defaults"]["run"]["shell"] == "bash"
    secrets = {"FEAST_REGISTRY_URL": team.url(), "REDIS_CONNECTION_STRING": team.redis}
    variables = {"FEATURE_DATA_DIR": team.shared}
    runner.mkdir()
    summary = runner / "step_summary.md"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           **{name: expanded(str(value), secrets, variables) for name, value in workflow()["env"].items()},
           "GITHUB_EVENT_NAME": event, "GITHUB_WORKSPACE": str(checkout), "RUNNER_TEMP": str(runner),
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_PATH": str(runner / "path"), "CI": "true"}
    printed = []
    for number, step in enumerate(run_steps(event)):
        script = runner / f"step{number}.sh"
        script.write_text(expanded(step["run"], secrets, variables))
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=checkout,
                                env=env, capture_output=True, text=True, timeout=1200)
        printed.append(f"--- {step['name']}\n{result.stdout}{result.stderr}")
        if result.returncode:
            break
    return result.returncode, "".join(printed), summary.read_text() if summary.exists() else ""


def git(*args: str, cwd: Path) -> str:
    return run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args], cwd).stdout


def checkout(origin: Path, branch: str, destination: Path) -> Path:
    """What actions/checkout leaves: a clone of the branch."""
    git("clone", "--quiet", "--branch", branch, str(origin), str(destination), cwd=origin.parent)
    return destination


def test_a_pull_request_is_reviewed_the_merge_registers_and_loads_and_the_hourly_run_finds_it_fresh(
        postgres_server, tmp_path):
    with team_of(postgres_server, tmp_path) as team:
        origin = copy_repo(ROOT / INTEGRATION, tmp_path / "origin")  # the folder as its own repository
        assert (origin / WORKFLOW).is_file()
        git("init", "--quiet", "--initial-branch=main", cwd=origin)
        git("add", "-A", cwd=origin)
        git("commit", "--quiet", "-m", "The feature repo", cwd=origin)

        # Deployed: the team's raw trips in its folder, main registered and loaded, a model trained.
        deployed = checkout(origin, "main", tmp_path / "deployed")
        (deployed / "data").symlink_to(team.shared)
        generate_data(deployed, *MODEL_DATA)
        code, output, _ = run_job("push", deployed, team, tmp_path / "runner0")
        assert code == 0, output
        assert f"{VIEW.name}: new" in output.splitlines()  # the first push registers everything
        trained = run([sys.executable, "train.py"], deployed, env={**team.env, "FEAST_FS_YAML_FILE_PATH": YAML}).stdout
        assert f"Registered {MODEL} version 1" in trained
        registered = team.registered(deployed)

        # 1. A pull request whose branch edits a feature.
        git("checkout", "--quiet", "-b", "month-edit", cwd=origin)
        edit(origin / CODE_EDIT.file, CODE_EDIT.old, CODE_EDIT.new)
        git("commit", "--quiet", "-am", "Edit a feature", cwd=origin)
        code, output, summary = run_job("pull_request", checkout(origin, "month-edit", tmp_path / "review"), team,
                                        tmp_path / "runner1")
        print(output)
        assert code == 2, output
        functions = ", ".join(f"{Path(CODE_EDIT.file).stem}.{field}" for field in CODE_EDIT.fields)  # as named
        for line in (f"{VIEW.name}: changed", f"  code changed: {functions}",
                     f"{SERVICE} (service): {VIEW.name}: {', '.join(CODE_EDIT.fields)}",
                     f"models trained on a changed service (retrain them): {MODEL} v1 ({SERVICE})",
                     f"Updated feature view {VIEW.name}: code of {functions}"):
            assert line in output.splitlines(), (line, output)
            assert line in summary.splitlines(), (line, summary)
        assert "### What the code changes (hamilton-feast changes --check: exit 2)" in summary
        assert team.registered(deployed) == registered  # a review writes nothing

        # 2. The merge.
        git("checkout", "--quiet", "main", cwd=origin)
        git("merge", "--quiet", "--no-ff", "-m", "Merge month-edit", "month-edit", cwd=origin)
        merged = checkout(origin, "main", tmp_path / "merged")
        code, output, summary = run_job("push", merged, team, tmp_path / "runner2")
        print(output)
        assert code == 0, output
        for line in (f"{VIEW.name}: changed", f"  code changed: {functions}", f"Re-materializing {VIEW.name}"):
            assert any(printed.startswith(line) for printed in summary.splitlines()), (line, summary)
        tags = team.registered(merged)[("featureViews", VIEW.name)]["spec"]["tags"]
        with environment(team.env):
            assert tags[lineage.CODE_VERSIONS_TAG] == Repo(merged, YAML).feast_object_tags()[
                Repo(merged, YAML).lineage.node_of[VIEW.name]][lineage.CODE_VERSIONS_TAG]
            # The online store holds the edited feature: each driver's latest row of the new table
            # (loaded before the merge, reloaded by the refresh).
            store = feast_operations.feature_store(str(merged), YAML)
            table = pd.read_parquet(team.shared / Path(VIEW.table).name)
            latest = table.sort_values(VIEW.timestamp).groupby(VIEW.keys[0]).last().head(5)
            online = store.get_online_features(features=[f"{VIEW.name}:{field}" for field in CODE_EDIT.fields],
                                               entity_rows=[{VIEW.keys[0]: key} for key in latest.index]).to_df()
        for field in CODE_EDIT.fields:
            assert online[field].tolist() == latest[field].tolist()

        # 3. The hourly run.
        code, output, summary = run_job("schedule", checkout(origin, "main", tmp_path / "hourly"), team,
                                        tmp_path / "runner3")
        print(output)
        assert code == 0, output
        assert "ok (" in summary and "### The online store (hamilton-feast online --check: exit 0)" in summary
