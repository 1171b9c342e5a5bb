"""Feast's file registry, written so that a killed run never leaves it half-written, and
checked when read. A repo selects the store in its feature_store.yaml:

    registry:
        path: data/registry.db
        registry_store_type: hamilton_feast.registry_store.AtomicFileRegistryStore

`registry_locked(store)`: registration and materialization of one repo, one process at a time;
on a SQL registry, each in one transaction (see sql_registry.py).
"""

import contextlib
import hashlib
import uuid
from datetime import datetime, timezone
from pathlib import Path

from google.protobuf.message import DecodeError

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from hamilton_feast import sql_registry
from hamilton_feast.atomic import locked, replaced

# The registry's digest, appended as protobuf field 1000 (bytes): Feast's own store and any
# protobuf reader skip it as an unknown field. Key: (1000 << 3) | 2 as a varint; length: 32.
DIGEST_KEY = bytes([0xC2, 0x3E, 32])
DIGEST_LENGTH = len(DIGEST_KEY) + 32


class AtomicFileRegistryStore(FileRegistryStore):
    """Feast's file registry store, writing through `replaced`, so a killed `apply` leaves the
    previous registry whole (Feast's own store truncates the file, then writes it); and checked
    when read, so a damaged file is an error naming it, never an empty or partial registry.

    Each version ends with its own sha256 (DIGEST_KEY), so a copy restored from a backup checks
    out as well. A registry written by another store (no digest) must decode and list a project.
    """

    def get_registry_proto(self):
        if not self._filepath.exists():
            return super().get_registry_proto()  # Feast's "Have you run feast apply?"
        data = self._filepath.read_bytes()
        signed = data[-DIGEST_LENGTH:-32] == DIGEST_KEY
        content = data[:-DIGEST_LENGTH] if signed else data
        registry_proto = RegistryProto()
        problem = None
        if not data:
            problem = "it is empty"
        elif signed and hashlib.sha256(content).digest() != data[-32:]:
            problem = f"its digest does not match its content ({len(data)} bytes; overwritten in part?)"
        else:
            try:
                registry_proto.ParseFromString(content)
            except DecodeError as error:
                problem = f"it cannot be decoded ({error}; truncated?)"
            else:
                if not signed and not registry_proto.projects:
                    problem = "it lists no project (truncated?)"
        if problem is None:
            return registry_proto
        raise ValueError(
            f"the registry {self._filepath} is damaged: {problem}. Restore it from a backup, or "
            "delete it and run `python apply.py --materialize`, which registers everything again "
            "and reloads the online store"
        )

    def _write_registry(self, registry_proto) -> None:
        registry_proto.version_id = str(uuid.uuid4())  # as Feast's store marks each version
        registry_proto.last_updated.FromDatetime(datetime.now(timezone.utc))
        data = registry_proto.SerializeToString()
        with replaced(self._filepath) as temporary:
            temporary.write_bytes(data + DIGEST_KEY + hashlib.sha256(data).digest())


def registry_locked(store):
    """For a block that writes a Feast store's registry (apply, materialize): `locked` on a file
    registry, `sql_registry.one_transaction` on a SQL one; another writer of the same repo
    waits. Remote files (s3://, gs://) are left to their store."""
    registry = store.config.registry
    if sql_registry.is_sql(store):
        return sql_registry.one_transaction(store)
    if registry.registry_type != "file" or "://" in registry.path:
        return contextlib.nullcontext()
    return locked(Path(store.repo_path) / registry.path)
