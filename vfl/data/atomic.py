"""The one way a job's files reach the disk: atomic, checked writes.

`atomic_write` writes to a temp file in the destination folder, fsyncs it, renames it into place and fsyncs the
folder, so a reader (a resume, a prediction job, an auditor) never sees a half-written file and a crash or a full
disk leaves nothing behind but, at worst, a `.<name>.<random>.tmp` file that `remove_stray_temps` deletes when the
node starts.

Under a jobs_dir the node protects with its at-rest key (vfl/data/sealed.py) every write here is sealed with
AES-GCM before it reaches the disk, except the job's metadata (`sealed.PLAIN_NAMES`); read such files back with
`sealed.read_bytes` / `read_text`. Files that are sealed are written from bytes in memory only, so their plaintext
never touches the disk, not even in a temp file.

A write that fails becomes a `StorageError` that names the party, the kind of file ("checkpoint", "model part",
...) and the cause ("No space left on device", "Read-only file system"), never the full path: the message may
travel to a peer. The path goes to this node's log.
"""
from __future__ import annotations

import errno
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from vfl.data import sealed
from vfl.errors import StorageError

log = logging.getLogger("vfl.storage")

TEMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened, e.g. Windows)."""
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


def storage_error(exc: OSError, path: Path, kind: str, party: str | None) -> StorageError:
    """The error a failed write of `path` (a `kind` of file) becomes; the path itself goes to the log only."""
    cause = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__)
    who = f"party {party!r}" if party else "this node"
    log.error("%s cannot write its %s at %s: %s", who, kind, path, cause)
    return StorageError(f"{who} cannot write its {kind}: {cause}", errno=exc.errno)


def atomic_write(path: Path, write: Callable[[str], None], kind: str = "file", party: str | None = None) -> Path:
    """Call `write(temp_path)`, fsync the result and rename it to `path`; the temp file never survives.

    The folder is created if needed. Any OSError (a full disk, a read-only or unwritable folder, a file-size
    limit) is raised as a StorageError naming `party`, `kind` and the cause. A file that is sealed at rest cannot
    be written this way (the library would put its plaintext on disk): write its bytes with `atomic_write_bytes`.
    """
    if sealed.sealing_keys(path) is not None:
        raise StorageError(f"{'party ' + repr(party) if party else 'this node'} cannot write its {kind} as a "
                           f"plaintext file: {sealed.display_name(path)} is encrypted at rest (write it elsewhere, "
                           "or as bytes)")
    return _replace(path, write, kind, party)


def _replace(path: Path, write: Callable[[str], None], kind: str, party: str | None) -> Path:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as exc:
        raise storage_error(exc, path, kind, party) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def _write_all(tmp: str, data: bytes | Iterable[bytes]) -> None:
    with open(tmp, "wb") as handle:
        for part in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
            handle.write(part)
        handle.flush()


def atomic_write_bytes(path: Path, data: bytes, kind: str = "file", party: str | None = None) -> Path:
    """Write `data` atomically; sealed first where the node's at-rest encryption applies (vfl/data/sealed.py)."""
    stored = sealed.seal_for(path, data)
    return _replace(path, lambda tmp: _write_all(tmp, stored), kind, party)


def atomic_write_stored(path: Path, stored: bytes | Iterable[bytes], kind: str = "file",
                        party: str | None = None) -> Path:
    """Write bytes exactly as they are to be stored (already sealed, by a key rotation): no sealing here. `stored`
    may be an iterable of byte strings (a rotation streams a large file through)."""
    return _replace(path, lambda tmp: _write_all(tmp, stored), kind, party)


def atomic_write_text(path: Path, text: str, kind: str = "file", party: str | None = None) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), kind, party)


def serialized(save: Callable[[io.BytesIO], None]) -> bytes:
    """What `save(buffer)` writes, as bytes: libraries that write files themselves (torch, numpy) write into memory
    first, so every disk error is an OSError of ours (torch reports a full disk as 'basic_ios::clear: iostream
    error')."""
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


def atomic_create(path: Path, data: bytes, kind: str = "file", party: str | None = None) -> bool:
    """Write `path` atomically only if it does not exist yet; False (and nothing written) if it does.

    The temp file is hard-linked into place, which fails if the name is taken: exclusive like open('x'), and a
    reader never sees a partial file.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed.seal_for(path, data))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    except OSError as exc:
        raise storage_error(exc, path, kind, party) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def remove_stray_temps(root: Path) -> list[Path]:
    """Delete the temp files a crash left under `root` (`.<name>.<random>.tmp`); returns what it removed."""
    removed: list[Path] = []
    if not Path(root).is_dir():
        return removed
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in files:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                path = Path(dirpath) / name
                try:
                    path.unlink()
                    removed.append(path)
                except OSError as exc:
                    log.warning("cannot remove the stray temp file %s: %s", path, exc.strerror or exc)
        for name in dirs:   # a spill's folder (psi.core.spill), emptied above
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                try:
                    (Path(dirpath) / name).rmdir()
                except OSError:
                    pass
    return removed


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
