#!/usr/bin/env bash
# The whole test suite: set up .venv with the test extras, run pytest, then check that the
# run left every tracked file as it was. Arguments are passed on to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Java 17 for the Spark tests (pytest -k test_spark), chromium for the Feast UI test
# (pytest -k test_feast_ui), Prometheus for the monitoring tests (tests/test_integration_monitoring.py)
# and PostgreSQL for the shared registry's (pytest -k postgres; its server programs are off the
# PATH, pg_ctlcluster comes with them), which fail loudly without them.
source scripts/ensure-system-packages.sh graphviz:dot redis-server:redis-server openjdk-17-jre-headless:java chromium:chromium \
    prometheus:prometheus postgresql:pg_ctlcluster
# The notebook extra too: the notebook tests execute them, and tests/test_docs.py checks that the
# `jupyter lab` the docs name is installed.
source scripts/setup-env.sh test,spark,model,notebook
work_tree_state() { git status --porcelain --untracked-files=all 2>/dev/null; git diff 2>/dev/null | sha256sum; }
before="$(work_tree_state)"
# Two workers: most tests wait on a Feast or Hamilton subprocess, and this machine has 2 cores.
# loadgroup keeps the tests of one xdist_group on one worker: the Spark ones share a session, and
# the one-folder tests a new virtual environment (tests/test_test_runner.py checks it works).
python -m pytest -n 2 --dist loadgroup "$@"
if [ "$before" != "$(work_tree_state)" ]; then
    echo "error: the test run changed files in the work tree:" >&2
    git status --porcelain --untracked-files=all >&2
    exit 1
fi
