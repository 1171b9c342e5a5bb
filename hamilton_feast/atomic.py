"""Writing what Feast reads so that a killed run never leaves it half-written.

Each file or folder is written beside its final place under a temporary name, flushed to disk,
then renamed over the old one, which readers see either whole or not yet replaced:

- `replaced(path)`: a context manager around any writer of a file or a folder;
- `save_to.atomic_parquet(path=...)`: Hamilton's `@save_to.parquet` for pandas, written that way;
- `AtomicFileRegistryStore`: Feast's file registry, written that way. A repo selects it in its
  feature_store.yaml: `registry: {path: data/registry.db, registry_store_type: ...}`;
- `locked(path)`: one writer at a time (a lock file beside `path`), so that two applies at once
  register and materialize one after the other instead of interleaving their read-modify-writes
  of the registry.

A temporary left behind by a killed run carries its process id and is removed by the next write
of the same path. A failed write (disk full, permission denied) leaves the old file as it was and
raises an error naming the path.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import Collection, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from google.protobuf.message import DecodeError
from hamilton import registry
from hamilton.io.utils import get_file_and_dataframe_metadata
from hamilton.plugins.pandas_extensions import PandasParquetWriter

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

TEMPORARY = ".tmp-"


def _temporary(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}{TEMPORARY}{pid}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temporaries of `path` whose writer is no longer running; return them."""
    removed = []
    for candidate in path.parent.glob(f".{path.name}{TEMPORARY}*"):
        pid = candidate.name.rsplit(TEMPORARY, 1)[1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            _remove(candidate)
            removed.append(candidate)
    return removed


def _sync(path: Path) -> None:
    """Flush a file, or every file of a folder, and their folder's entries, to disk."""
    for file in [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    _sync_folder(path if path.is_dir() else path.parent)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")


def restored(path: str | Path) -> Path:
    """`path`, put back from where `replaced` set an old folder aside, if a run was killed
    between its two renames."""
    path = Path(path)
    if not path.exists() and _aside(path).is_dir():
        _aside(path).rename(path)
    return path


@contextlib.contextmanager
def replaced(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write a file or a folder to; on success, rename it
    over `path` (a folder replaces the old folder). On any error the temporary is removed and
    `path` is left as it was; an OSError (disk full, permission denied) is raised as a
    ValueError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        restored(path)
        remove_leftovers(path)
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from error
    temporary = _temporary(path, os.getpid())
    try:
        yield temporary
        _sync(temporary)
        if temporary.is_dir() and path.is_dir():
            # A folder cannot be renamed over a folder: the old one steps aside first.
            _remove(_aside(path))
            path.rename(_aside(path))
            temporary.rename(path)
            _remove(_aside(path))
        else:
            os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:
        _remove(temporary)
        raise ValueError(
            f"cannot write {path}: {error.strerror or error}; the previous version is unchanged"
        ) from error
    except BaseException:
        _remove(temporary)
        raise


@dataclasses.dataclass
class AtomicParquetWriter(PandasParquetWriter):
    """Hamilton's pandas parquet saver (`@save_to.parquet`), writing through `replaced`:
    readers see the old table or the new one, never part of one."""

    @classmethod
    def applicable_types(cls) -> Collection[type]:
        return [pd.DataFrame]

    @classmethod
    def name(cls) -> str:
        return "atomic_parquet"

    def save_data(self, data: pd.DataFrame) -> dict[str, Any]:
        with replaced(self.path) as temporary:
            data.to_parquet(temporary, **self._get_saving_kwargs())
        return get_file_and_dataframe_metadata(str(self.path), data)


registry.register_adapter(AtomicParquetWriter)


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


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s lock file (`.<name>.lock` beside it) while the block
    runs; wait, saying so, while another process holds it. The lock goes with the process, so a
    killed holder never leaves it taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            print(f"Waiting for {holder} to finish writing {path.name} ...", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def registry_locked(store):
    """`locked` on a Feast store's file registry, for a block that writes it (apply, materialize):
    another writer of the same repo waits. Other registries (SQL) handle their own writers."""
    registry = store.config.registry
    if registry.registry_type != "file" or "://" in registry.path:
        return contextlib.nullcontext()
    return locked(Path(store.repo_path) / registry.path)
