"""Writing what Feast reads so that a killed run never leaves it half-written.

Each file or folder is written beside its final place under a temporary name, flushed to disk,
then renamed over the old one, which readers see either whole or not yet replaced:

- `replaced(path)`: a context manager around any writer of a file or a folder;
- `save_to.atomic_parquet(path=...)`: Hamilton's `@save_to.parquet` for pandas, written that way;
- `locked(path)`: one writer at a time (a lock file beside `path`), so that two applies at once
  register and materialize one after the other instead of interleaving their read-modify-writes
  of the registry.

Feast's file registry is written the same way by `registry_store.AtomicFileRegistryStore`.
This module does not import Feast: the saver runs in Spark's Python workers too.

A temporary left behind by a killed run carries its process id and is removed by the next write
of the same path. A failed write (disk full, permission denied) leaves the old file as it was and
raises an error naming the path.
"""

import contextlib
import dataclasses
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from hamilton import registry
from hamilton.io.utils import get_file_and_dataframe_metadata
from hamilton.plugins.pandas_extensions import PandasParquetWriter

TEMPORARY = ".tmp-"
# A file name: a write of that file waits a minute with its temporary written, before the rename,
# so that the fault tests can kill a run at that moment on any disk (tmpfs writes too fast to
# be caught otherwise). Never set in normal use.
PAUSE_BEFORE_RENAME = "HAMILTON_FEAST_PAUSE_BEFORE_RENAME"


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
        if os.environ.get(PAUSE_BEFORE_RENAME) == path.name:  # the fault tests' moment to kill
            time.sleep(60)
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

