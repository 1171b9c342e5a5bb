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


@contextlib.contextmanager
def known_notices_hidden():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ON_DEMAND_NOTICE, category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=IBIS_DUCKDB_NOTICE, category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=SPARK_NOTICE, category=RuntimeWarning)
        yield
