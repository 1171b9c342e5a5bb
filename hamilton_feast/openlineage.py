"""OpenLineage events for a repo's runs: Hamilton's transform runs and Feast's registrations.

`adapters(repo)` gives the lifecycle adapters to add to the driver: Hamilton's OpenLineage
adapter, which reports each run that computes features (the raw data it loaded, the tables it
saved, with their schemas), and a hook that reports each registration with Feast's emitter
(data sources and entities into feature views, views into services) once the `registered` node
has run. Both use the project's namespace, and a saved table and the Feast source reading it
share a `dataSource` URI, which is how Feast's lineage consumer joins the two into one graph
from raw data to feature service.

Where the events go is OpenLineage's own configuration: with OPENLINEAGE_URL or
OPENLINEAGE_CONFIG set (e.g. a Marquez or DataHub endpoint), there; otherwise they are
appended, one JSON event per line, to data/openlineage/events.jsonl in the repo.

Why not Feast's own `openlineage:` block in feature_store.yaml: with feast 0.67 its file
transport drops `additional_config` (path and append mode), so every event lands in a new file
`openlineage_events.json-<time>.json` in the current directory; and its apply-time emission
imports grpc, which only feast[grpcio] installs, failing the apply after the registry is
committed. The emitter below is Feast's, configured directly.
"""

import logging
import os
from pathlib import Path
from typing import Any

from hamilton.lifecycle import NodeExecutionHook
from hamilton.plugins.h_openlineage import OpenLineageAdapter
from openlineage.client import OpenLineageClient

from feast.feature_view import DUMMY_ENTITY
from feast.openlineage import FeastOpenLineageEmitter, OpenLineageConfig, resolve_namespace
from feast.repo_contents import RepoContents

EVENTS_FILE = Path("data") / "openlineage" / "events.jsonl"  # in the repo folder


def _file_transport(repo_path: Path) -> dict | None:
    """The local file transport, unless OpenLineage is configured in the environment."""
    if os.environ.get("OPENLINEAGE_URL") or os.environ.get("OPENLINEAGE_CONFIG"):
        return None
    events = repo_path / EVENTS_FILE
    events.parent.mkdir(parents=True, exist_ok=True)
    return {"type": "file", "log_file_path": str(events), "append": True}


def namespace(project: str) -> str:
    """The OpenLineage namespace of a Feast project, as Feast's emitter names it."""
    return resolve_namespace(None, project)


class RegistrationEvents(NodeExecutionHook):
    """Reports what the `registered` node registered, with Feast's emitter. A failure is logged,
    not raised, as Feast does, so lineage never fails a registration that has happened."""

    def __init__(self, repo_path: Path, project: str):
        self.repo_path, self.project = repo_path, project

    def run_before_node_execution(self, **kwargs: Any) -> None:
        pass

    def run_after_node_execution(self, *, node_name: str, result: Any, success: bool, **kwargs: Any) -> None:
        if node_name != "registered" or not success or not isinstance(result, RepoContents):
            return
        # RepoContents is a NamedTuple of lists, one per kind of object.
        registered = [o for kind in result for o in kind if o is not DUMMY_ENTITY]
        transport = _file_transport(self.repo_path)
        config = OpenLineageConfig(
            transport_type=transport["type"] if transport else None,
            additional_config={k: v for k, v in (transport or {}).items() if k != "type"},
        )
        emitter = FeastOpenLineageEmitter(config)
        try:
            emitter.emit_apply(registered, self.project)
        except Exception as error:  # noqa: BLE001 - reported, and the registration stands
            logging.getLogger(__name__).warning("OpenLineage registration events failed: %s", error)
        finally:
            emitter.close()


def adapters(repo) -> list:
    """The lifecycle adapters that report a run of the repo's driver: Hamilton's for the
    computation (job `<project>.features`), and Feast's emitter for the registration."""
    transport = _file_transport(repo.path)
    client = OpenLineageClient(config={"transport": transport} if transport else None)
    return [
        OpenLineageAdapter(client, namespace(repo.project), f"{repo.project}.features"),
        RegistrationEvents(repo.path, repo.project),
    ]
