"""Fixtures of this repo's tests. They work in a copy of this folder as in the project: the
helpers come from the installed hamilton_feast (its pytest plugin), the rest from this folder."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for this_repo.py

from this_repo import REPO  # noqa: E402

from hamilton_feast import Repo  # noqa: E402


@pytest.fixture(scope="session")
def repo() -> Repo:
    """This repo as the tools read it: settings.yaml, its modules, what the DAG derives."""
    return Repo(REPO)


@pytest.fixture(scope="session")
def modules(repo) -> dict:
    """The repo's own modules by name (raw_data, trip_features, feast_objects)."""
    return {module.__name__: module for module in repo.modules}
