"""Fixtures of the cross-repo specifications. The helpers come from hamilton_feast.testing."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for cross_repo.py
# For this_repo.py: the integration repo's tests that need Redis, Spark or a browser are here, outside the folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration_feature_store" / "tests"))

from cross_repo import APPLY, DEFAULT, ROOT, SIMPLE  # noqa: E402

from hamilton_feast.testing import copy_repo, file_hashes, generate_data, run  # noqa: E402


@pytest.fixture(scope="module")
def applied_repos(tmp_path_factory):
    """Each of the default and simple repos, copied, with fresh data, registered its own way.

    Yields {repo name: (path of the copy, hashes of its code files right after copying)}.
    """
    repos = {}
    for name in (DEFAULT, SIMPLE):
        repo_dir = copy_repo(ROOT / name, tmp_path_factory.mktemp(name))
        hashes = file_hashes(repo_dir)
        generate_data(repo_dir)
        run(APPLY[name], cwd=repo_dir)
        repos[name] = (repo_dir, hashes)
    return repos
