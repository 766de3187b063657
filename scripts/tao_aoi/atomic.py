"""Crash-safe outputs: write to a temp file in the same directory, fsync, rename.

A reader (or a rerun after SIGKILL) therefore sees either the old file or the new one, never a
torn one, and a failed command leaves no half-written output behind. A full file system (ENOSPC,
or a quota: EDQUOT) is reported as ``errors.DiskFull``: one line naming the folder and what to do.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import itertools
from pathlib import Path

from tao_aoi.errors import DiskFull
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only; importing typing costs start-up time
    from typing import Iterator


_counter = itertools.count()
_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException, folder: str | os.PathLike[str]) -> DiskFull | None:
    """``exc`` as a DiskFull naming ``folder`` when it says the file system is full, else None."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno not in _FULL and "no space left on device" not in str(exc).lower():
        return None
    return DiskFull(f"{folder}: no space left on the file system holding it; free space there (df -h {folder}) or "
                    f"move the results folder to a larger disk, then rerun the same command (nothing was "
                    f"half-written; the run resumes where it stopped)")


@contextlib.contextmanager
def _reporting_disk_full(folder: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        full = disk_full(exc, folder)
        if full is None:
            raise
        raise full from None


def _new_temp(target: Path) -> Path:
    """A fresh sibling file (O_EXCL); tempfile would cost ~10 ms of start-up in the state scripts."""
    while True:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{next(_counter)}.{os.urandom(3).hex()}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return tmp
        except FileExistsError:
            continue


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds.

    For writers that want a filename (pandas, pyarrow, Pillow, numpy).
    """
    target = Path(path)
    with _reporting_disk_full(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp(target)
        try:
            yield tmp
            if fsync:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
            if fsync:
                _fsync_dir(target.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; it replaces ``path`` only if the block succeeds."""
    import shutil
    import tempfile

    target = Path(path)
    with _reporting_disk_full(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            yield tmp
            _fsync_dir(tmp)  # its entries are durable before the rename publishes them
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
            _fsync_dir(target.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def write_member(path: str | os.PathLike[str], data: bytes) -> None:
    """A new file inside a folder that ``atomic_dir`` is building: written and fsynced in place, since
    the folder's rename is what publishes it (a temp file + rename per member would only add fsyncs)."""
    with _reporting_disk_full(Path(path).parent), open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path: str | os.PathLike[str], obj: object, *, fsync: bool = True) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=str) + "\n"
    write_text(path, text, fsync=fsync)
