"""The machinery of this project's Hamilton feature repos, kept out of the folders users copy.

- `Repo`: a repo's settings.yaml and what its DAG derives from it (repo.py);
- `feast_operations`: Feast's plan, apply, materialize and retrieval as Hamilton nodes;
- `feature_fields`, `udf_fields`, `udf_source`: the parts of Feast objects the DAG's functions declare (objects.py);
- lineage, change detection, OpenLineage, pictures and fast training sets, behind the
  `hamilton-feast` command (cli.py).
"""

from hamilton_feast.objects import feature_fields, udf_fields, udf_source
from hamilton_feast.repo import Repo

__all__ = ["Repo", "feature_fields", "udf_fields", "udf_source"]
