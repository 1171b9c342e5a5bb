"""The machinery of this project's Hamilton feature repos, kept out of the folders users copy.

- `Repo`: a repo's settings.yaml and what its DAG derives from it (repo.py);
- `feast_operations`: Feast's plan, apply, materialize and retrieval as Hamilton nodes;
- `feature_fields`, `udf_fields`, `udf_source`: the parts of Feast objects the DAG's functions
  declare (objects.py);
- `windows`: trailing time windows in linear time on every core;
- `atomic`, `registry_store`: tables and the registry written so that a killed run never leaves
  them half-written; the registry checked when read; `sql_registry`: the same on Feast's SQL
  registry (PostgreSQL), each apply or load one transaction;
- `online`: the online store checked against the registry, and reloaded;
- lineage, change detection, OpenLineage, pictures, fast training sets and Spark, behind the
  `hamilton-feast` command (cli.py).

Names are imported when first used, so that importing one module (such as `windows`, in a Spark
worker or a repo's feature module) does not import Feast.
"""

import importlib

_NAMES = {"Repo": "repo", "feature_fields": "objects", "udf_fields": "objects", "udf_source": "objects"}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"hamilton_feast.{_NAMES[name]}"), name)
    try:
        return importlib.import_module(f"hamilton_feast.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module 'hamilton_feast' has no attribute {name!r}") from None
