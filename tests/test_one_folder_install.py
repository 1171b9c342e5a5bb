"""A repo folder copied on its own works after exactly the `pip install` line the README gives
under "Use one repo on its own": a fresh virtual environment, then each copied folder generates
its data and registers its objects (and the integration repo runs its notebook); and a copy of
the integration folder under another name runs its own tests, after `pip install pytest`, with
the README's command."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cross_repo import DEFAULT, INTEGRATION, ROOT, SIMPLE

from hamilton_feast.testing import copy_repo, run

pytestmark = pytest.mark.xdist_group("one_folder")  # one worker, one new virtual environment


def readme_install_line() -> str:
    section = (ROOT / "README.md").read_text().split("## Use one repo on its own")[1].split("\n## ")[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    installs = [line for line in lines if line.startswith("pip install")]
    assert len(installs) == 1, installs
    return installs[0]


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    """The Python of a new virtual environment where only the README's line was run, in a clean
    copy of the project (pip builds in the folder it installs from)."""
    folder = tmp_path_factory.mktemp("one_folder")
    project = folder / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "data", "__pycache__", ".pytest_cache"))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = shlex.split(readme_install_line())
    result = subprocess.run([str(venv / "bin" / "python"), "-m", *command, "--quiet"], cwd=project,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return venv / "bin" / "python"


def test_the_readme_install_line_is_the_projects_own_install():
    assert readme_install_line() == 'pip install ".[notebook,model]" -c constraints.txt'


def test_the_default_folder_works_on_its_own(python, tmp_path):
    repo_dir = copy_repo(ROOT / DEFAULT, tmp_path)
    run([str(python), "generate_data.py"], cwd=repo_dir)
    output = run([str(python.parent / "feast"), "apply"], cwd=repo_dir).stdout
    assert "Created feature view driver_hourly_stats" in output


def test_the_simple_folder_works_on_its_own(python, tmp_path):
    repo_dir = copy_repo(ROOT / SIMPLE, tmp_path)
    run([str(python), "generate_data.py"], cwd=repo_dir)
    output = run([str(python), "apply.py"], cwd=repo_dir).stdout
    assert "Created feature view driver_hourly_stats" in output
    assert "No changes to registry" in run([str(python.parent / "feast"), "plan"], cwd=repo_dir).stdout


def test_the_integration_folder_works_on_its_own_notebook_included(python, tmp_path):
    repo_dir = copy_repo(ROOT / INTEGRATION, tmp_path)
    run([str(python), "generate_data.py", "--trips", "5000"], cwd=repo_dir)
    output = run([str(python), "apply.py", "--materialize"], cwd=repo_dir).stdout
    assert "Created feature view driver_trip_stats" in output
    assert "nothing changed." in run([str(python.parent / "hamilton-feast"), "changes", "--check"], cwd=repo_dir).stdout
    execute = (
        "import nbformat; from nbclient import NotebookClient\n"
        "nb = nbformat.read('retrieval.ipynb', as_version=4)\n"
        "NotebookClient(nb, timeout=600, kernel_name='python3').execute()\n"
        "print(next(c for c in nb.cells if 'summary' in c.metadata.get('tags', [])).outputs[0]['text'])\n"
    )
    summary = run([str(python), "-c", execute], cwd=repo_dir).stdout
    assert '"odfv_skew_rows": 0' in summary and '"training_rows": 2000' in summary


def readme_test_command() -> str:
    section = (ROOT / "README.md").read_text().split("## Use one repo on its own")[1].split("\n## ")[0]
    commands = re.findall(r"`(pytest [^`]*)`", section)
    assert len(set(commands)) == 1, commands
    return commands[0]


def test_a_renamed_copy_of_the_integration_folder_passes_its_own_tests(python, tmp_path):
    """Its tests take every name from the repo itself (tests/this_repo.py), so they hold under
    another folder name; the tests that need Redis, Spark or a browser are the project's."""
    renamed = tmp_path / "my_trip_features"
    copy_repo(ROOT / INTEGRATION, tmp_path).rename(renamed)
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "pytest"], capture_output=True,
                               text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    command = shlex.split(readme_test_command())
    result = subprocess.run([str(python), "-m", *command, "-q", "-p", "no:cacheprovider"], cwd=renamed,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary and "error" not in summary, summary
