"""OpenLineage events for this repo's runs: Hamilton's transform runs and Feast's registrations.

Hamilton's OpenLineage adapter reports each run that computes features: the raw trips it
loaded and the feature table it saved, with their schemas. Feast's OpenLineage emitter reports
each registration: data sources and entities into feature views, views into services. Both use
the project's namespace, and the feature table and the Feast source share a `dataSource` URI,
which is how Feast's lineage consumer joins the two into one graph from raw data to service.

Where the events go is OpenLineage's own configuration: with OPENLINEAGE_URL or
OPENLINEAGE_CONFIG set (e.g. a Marquez or DataHub endpoint), there; otherwise they are
appended, one JSON event per line, to data/openlineage/events.jsonl in this folder.

Why not Feast's own `openlineage:` block in feature_store.yaml: with feast 0.67 its file
transport drops `additional_config` (path and append mode), so every event lands in a new
file `openlineage_events.json-<time>.json` in the current directory; and its apply-time
emission imports grpc, which only feast[grpcio] installs, failing the apply after the registry
is committed. The emitter below is Feast's, configured directly.
"""

import logging
import os
from pathlib import Path

from hamilton.plugins.h_openlineage import OpenLineageAdapter
from openlineage.client import OpenLineageClient

from feast.openlineage import FeastOpenLineageEmitter, OpenLineageConfig, resolve_namespace

REPO_DIR = Path(__file__).resolve().parent
EVENTS_PATH = REPO_DIR / "data" / "openlineage" / "events.jsonl"


def _file_transport() -> dict | None:
    """The local file transport, unless OpenLineage is configured in the environment."""
    if os.environ.get("OPENLINEAGE_URL") or os.environ.get("OPENLINEAGE_CONFIG"):
        return None
    EVENTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    return {"type": "file", "log_file_path": str(EVENTS_PATH), "append": True}


def namespace(project: str) -> str:
    """The OpenLineage namespace of a Feast project, as Feast's emitter names it."""
    return resolve_namespace(None, project)


def hamilton_adapter(project: str) -> OpenLineageAdapter:
    """A Hamilton lifecycle adapter reporting each run as job `<project>.features`."""
    transport = _file_transport()
    client = OpenLineageClient(config={"transport": transport} if transport else None)
    return OpenLineageAdapter(client, namespace(project), f"{project}.features")


def emit_registrations(objects, project: str) -> None:
    """Report registered Feast objects with Feast's emitter; a failure is logged, not raised,
    as Feast does, so lineage never blocks a registration that has already happened."""
    transport = _file_transport()
    config = OpenLineageConfig(
        transport_type=transport["type"] if transport else None,
        additional_config={k: v for k, v in (transport or {}).items() if k != "type"},
    )
    emitter = FeastOpenLineageEmitter(config)
    try:
        emitter.emit_apply(list(objects), project)
    except Exception as error:  # noqa: BLE001 - reported, and the registration stands
        logging.getLogger(__name__).warning("OpenLineage registration events failed: %s", error)
    finally:
        emitter.close()
