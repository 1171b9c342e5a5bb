"""A Feast store to read a registry and plan with, without writing into the repo's folder."""

import contextlib
import tempfile
from pathlib import Path

import yaml

from feast import FeatureStore


@contextlib.contextmanager
def store_that_writes_nothing(feature_store: FeatureStore, feature_store_yaml: str):
    """The store, to read and plan with; or, while its file registry does not exist yet (Feast
    would create it, and a sqlite online store, just to plan), the same configuration with
    those two in a temporary folder, so that the repo's folder is left as it was."""
    registry = feature_store.config.registry
    if registry.registry_type != "file" or (feature_store.repo_path / registry.path).exists():
        yield feature_store
        return
    settings = yaml.safe_load((feature_store.repo_path / feature_store_yaml).read_text())
    with tempfile.TemporaryDirectory() as folder:
        if isinstance(settings.get("registry"), dict):
            settings["registry"]["path"] = f"{folder}/registry.db"
        else:
            settings["registry"] = f"{folder}/registry.db"
        online = settings.setdefault("online_store", {"type": "sqlite"})
        if isinstance(online, dict) and online.get("type", "sqlite") == "sqlite":
            online["path"] = f"{folder}/online_store.db"
        Path(folder, "feature_store.yaml").write_text(yaml.safe_dump(settings))
        yield FeatureStore(repo_path=str(feature_store.repo_path), fs_yaml_file=Path(folder, "feature_store.yaml"))
