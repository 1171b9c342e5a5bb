"""What a repo's apply script needs besides its driver: its command line, and errors a user can
read (a short message and exit code 1 for bad data or definitions; a traceback for a bug)."""

import argparse
import logging
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
from hamilton.data_quality.base import DataValidationError
from hamilton.plugins import h_tqdm

from feast.errors import FeastError
from hamilton_feast.notices import known_notices_hidden

# What bad code or bad data raises; reported in a few lines, with nothing registered.
EXPECTED_ERRORS = (DataValidationError, FeastError, ValueError, FileNotFoundError)
# Input rows from which a run shows Hamilton's progress bar (about 100k trips take a second).
PROGRESS_BAR_ROWS = 100_000


def apply_arguments(doc: str, argv: list[str] | None = None, materialize: bool = False):
    """--plan and --feature-store-yaml (and --materialize) for an apply script documented by `doc`."""
    parser = argparse.ArgumentParser(
        description=doc.strip().splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="show the changes, apply nothing")
    if materialize:
        mode.add_argument("--materialize", action="store_true", help="also materialize up to now")
    parser.add_argument("--full-diff", action="store_true",
                        help="print Feast's own diff, property by property, not one line per object")
    parser.add_argument(
        "--feature-store-yaml",
        default="feature_store.yaml",
        help="the store configuration in this folder, e.g. feature_store.redis.yaml",
    )
    return parser.parse_args(argv)


def progress_bar(repo) -> list:
    """Hamilton's progress adapter for a long run: when a person is watching (standard error is
    a terminal, so never in tests or CI) and the parquet inputs of the DAG hold more than
    PROGRESS_BAR_ROWS rows."""
    if not sys.stderr.isatty():
        return []
    inputs = [p for p in repo.inputs.values() if isinstance(p, Path) and p.suffix == ".parquet"]
    rows = sum(pq.read_metadata(path).num_rows for path in inputs if path.is_file())
    return [h_tqdm.ProgressBar(desc=repo.project)] if rows > PROGRESS_BAR_ROWS else []


def error_lines(error: Exception, outcome: str = "nothing was registered") -> str:
    """An expected error as one line, `error: <outcome>: <message>`; several failed checks
    each on a line of their own below `error: <outcome>:`."""
    messages = [m.strip() for m in (error.args[0] if isinstance(error, DataValidationError) else [str(error)])]
    if len(messages) == 1:
        return f"error: {outcome}: {messages[0]}"
    return "\n".join([f"error: {outcome}:", *(f"  {message}" for message in messages)])


def report(error: Exception, outcome: str = "nothing was registered") -> int:
    """Print an expected error (see error_lines); return exit code 1."""
    print(error_lines(error, outcome), file=sys.stderr)
    return 1


def feast_objects(path: str) -> dict:
    """The Feast objects of the repo that `path` (a feature_definitions.py) is in, for Feast's
    own command line (`feast plan`, `feast apply`), with the tables saved last, checked against
    the code. An expected error ends the command with its line and exit code 1, nothing registered."""
    from hamilton_feast.repo import Repo

    quiet_hamilton_errors()
    try:
        with known_notices_hidden():
            repo = Repo(path)
            _refuse_feast_apply_on_a_sql_registry(repo)
            return repo.feast_objects()
    except EXPECTED_ERRORS as error:
        raise SystemExit(error_lines(error)) from None


def _refuse_feast_apply_on_a_sql_registry(repo) -> None:
    """`feast apply` writes a SQL registry object by object, each in a transaction of its own (a
    killed run leaves part of a registration): refused, pointing to apply.py, which registers in
    one transaction (sql_registry.py). `feast plan` writes nothing and is left alone."""
    import click
    import yaml

    context = click.get_current_context(silent=True)
    registry = yaml.safe_load((repo.path / repo.feature_store_yaml).read_text()).get("registry")
    if context is not None and context.info_name == "apply" and isinstance(registry, dict) \
            and registry.get("registry_type") == "sql":
        raise ValueError(
            f"`feast apply` would write the SQL registry of {repo.feature_store_yaml} object by object, each in a "
            "transaction of its own, so that a killed run leaves part of a registration; run `python apply.py "
            f"--feature-store-yaml {repo.feature_store_yaml}`, which registers in one transaction")


def quiet_hamilton_errors() -> None:
    """Hamilton logs a failing node with its traceback; the errors we expect get a short message
    instead, and anything unexpected still raises with its traceback."""
    for name in ("hamilton.execution.graph_functions", "hamilton.driver"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # A failed check (importance "fail") is logged, then raised and reported; its warnings stay.
    logging.getLogger("hamilton.data_quality.base").addFilter(lambda record: record.levelno < logging.ERROR)


def exit_with(exit_code: int) -> None:
    if exit_code:
        # The error is reported and nothing is left to clean up. Skip interpreter teardown: on a
        # loaded machine a native library thread was seen to abort it ("terminate called without
        # an active exception"), which would turn exit code 1 into a crash.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    sys.exit(0)


def run(main, outcome: str = "nothing was registered") -> None:
    """Run a script's `main()` and exit: 0, or 1 with the message of an expected error."""
    quiet_hamilton_errors()
    try:
        with known_notices_hidden():  # e.g. Feast's notice on building a SparkSource
            main()
    except EXPECTED_ERRORS as error:
        exit_with(report(error, outcome))
    exit_with(0)
