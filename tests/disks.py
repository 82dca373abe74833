"""Small and read-only disks for the tests of full and unwritable jobs directories.

A full disk is a tmpfs of a few MiB mounted over the directory (`mount -t tmpfs -o size=...`), which needs root
(CAP_SYS_ADMIN); a test that cannot mount one is skipped with that reason. A read-only disk is a read-only bind mount of
it over itself: root ignores file permissions, so a chmod would not stop a root process from writing.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True)


class SmallDisk:
    """A tmpfs mounted at `path`; `fill()` leaves it (nearly) no free space, `read_only()` remounts it read-only."""

    def __init__(self, path: Path, size_kib: int):
        self.path = Path(path)
        self.size_kib = size_kib

    def fill(self) -> None:
        """Fill the disk to the last byte: every later write of a job fails with ENOSPC."""
        with open(self.path / "filler", "wb") as handle:
            block = b"\0" * 65536
            try:
                while True:
                    handle.write(block)
                    handle.flush()
            except OSError:
                pass
        with open(self.path / "filler-tail", "wb", buffering=0) as handle:  # the last partial block
            try:
                while True:
                    handle.write(b"\0" * 512)
            except OSError:
                pass

    def free(self) -> None:
        for name in ("filler", "filler-tail"):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()

    def read_only(self, on: bool = True) -> None:
        """A read-only bind mount over the disk (a plain remount fails while a file on it is open for writing);
        files already open keep writing underneath, every new write through the path fails with EROFS."""
        steps = [("mount", "--bind", str(self.path), str(self.path)),
                 ("mount", "-o", "remount,bind,ro", str(self.path))] if on else [("umount", str(self.path))]
        for step in steps:
            done = _run(*step)
            if done.returncode:
                raise RuntimeError(f"{' '.join(step)}: {done.stderr.strip()}")


@contextlib.contextmanager
def small_disk(path: Path, size_kib: int = 8192) -> Iterator[SmallDisk]:
    """Mount a `size_kib` tmpfs at `path` (created if needed) for the duration; skip the test if not permitted."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a full or read-only jobs_dir needs a tmpfs mount, which needs root here")
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs for a full jobs_dir: {done.stderr.strip()}")
    try:
        yield SmallDisk(path, size_kib)
    finally:
        for _ in range(3):  # the read-only bind, then the tmpfs
            if _run("umount", "-l", str(path)).returncode:
                break
