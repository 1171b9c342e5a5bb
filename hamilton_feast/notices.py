"""The known-harmless notices third-party code prints on this repo's normal paths, hidden
exactly where they arise so that any other warning still shows."""

import contextlib
import warnings

# Feast, on every plan and apply of a repo with an on-demand view: about Feast, not the repo.
ON_DEMAND_NOTICE = "On demand feature view is an experimental feature"
# ibis, inside Feast's DuckDB offline store (retrieval and materialization), on duckdb 2.
IBIS_DUCKDB_NOTICE = r"fetch_arrow_table\(\) is deprecated"
# Feast, on every use of its Spark offline store and Spark source (the Spark configuration).
SPARK_NOTICE = r"The spark (offline store|data source API) is an experimental feature"
# MLflow 3.17, on a run in a SQLite store: SQLAlchemy's notice about MLflow's own mappers; on
# logging the training questions: which kind of source a local dataset is, and that an integer
# column cannot hold a missing value (the questions' driver ids never miss).
MLFLOW_NOTICES = [
    (r"The ``noload`` loader strategy is deprecated", DeprecationWarning),
    (r"The specified dataset source can be interpreted in multiple ways", UserWarning),
    (r"Hint: Inferred schema contains integer column", UserWarning),
]
# MLflow's log line when Feast's client logs a model by `artifact_path` (MLflow 3 says `name`).
MLFLOW_ARTIFACT_PATH_NOTICE = "`artifact_path` is deprecated"


@contextlib.contextmanager
def known_notices_hidden():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ON_DEMAND_NOTICE, category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=IBIS_DUCKDB_NOTICE, category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=SPARK_NOTICE, category=RuntimeWarning)
        for message, category in MLFLOW_NOTICES:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield
