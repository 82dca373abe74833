"""Where the per-ID work runs: a ``spawn`` process pool (default) or one background thread (``workers=0``).

The protocol submits whole chunks (thousands of IDs or points) and gets ``concurrent.futures.Future``s back,
so it can keep receiving and sending while the chunks are computed. Tasks carry their scalar, so one pool
serves any number of sessions. ``fork`` is never used: gRPC and fork() do not mix.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Sequence

from psi.core import curve25519, hashing, okvs, oprf
from psi.errors import PsiConfigError


def _hash_task(ids, salt, canon, scalar, rows, out_bytes):
    return hashing.hash_and_blind(ids, salt, canon, scalar, rows, out_bytes)


def _id_keys_task(ids, canon, rows):
    return hashing.id_keys(ids, canon, rows)


def _blind_task(scalar, data, out_bytes, validate):
    return curve25519.blind_points(scalar, data, out_bytes, validate)


def _unblind_task(a_inv, data, session_id, party):
    return oprf.unblind_and_derive(a_inv, data, session_id, party)


def _entries_task(ids, salt, canon, k, rows, session_id, party, t, index, m, total_in_share, emit_total):
    return oprf.passive_entries(ids, salt, canon, k, rows, session_id, party, t, index, m, total_in_share,
                                emit_total)


def _okvs_task(keys, values, session_id, party):
    attempt, table = okvs.encode(keys, values, lambda a: oprf.okvs_seed(session_id, party, a))
    return attempt, table.tobytes()


def _warm_task(delay: float) -> int:
    import time
    time.sleep(delay)
    return os.getpid()


def _peak_rss_task() -> int:
    return peak_rss_bytes()


def peak_rss_bytes(pid: int | str = "self") -> int:
    """VmHWM (peak resident set size) of a process, in bytes (0 if unavailable)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
        if pid == "self":
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except Exception:
        pass
    return 0


def default_workers() -> int:
    return os.cpu_count() or 1


class Engine:
    """Runs the per-ID tasks (hash-and-blind, blind, the N-party OPRF/OKVS tasks); ``workers`` processes
    (0 = a thread in this process)."""

    def __init__(self, workers: int | None = None):
        if workers is None:
            workers = default_workers()
        if workers < 0:
            raise PsiConfigError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self._lock = threading.Lock()
        self._executor = None
        self._closed = False

    # The executor is created lazily and re-created if a worker process died.
    def _get(self):
        with self._lock:
            if self._closed:
                raise PsiConfigError("engine is closed")
            if self._executor is None:
                if self.workers == 0:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="psi-compute")
                else:
                    self._executor = ProcessPoolExecutor(max_workers=self.workers,
                                                         mp_context=multiprocessing.get_context("spawn"))
            return self._executor

    def _submit(self, fn, *args) -> Future:
        try:
            return self._get().submit(fn, *args)
        except BrokenProcessPool:
            with self._lock:
                self._executor = None
            return self._get().submit(fn, *args)

    @property
    def parallelism(self) -> int:
        return max(1, self.workers)

    def hash_and_blind(self, ids: Sequence, salt: bytes, canon, scalar: bytes, rows=None,
                       out_bytes: int = 32) -> Future:
        return self._submit(_hash_task, list(ids), salt, canon, scalar, rows, out_bytes)

    def id_keys(self, ids: Sequence, canon, rows) -> Future:
        return self._submit(_id_keys_task, ids, canon, rows)

    def blind(self, scalar: bytes, data: bytes, out_bytes: int = 32, validate: bool = True) -> Future:
        return self._submit(_blind_task, scalar, data, out_bytes, validate)

    def unblind_derive(self, a_inv: bytes, data: bytes, session_id: str, party: str) -> Future:
        """N-party, active party: tag || mask of F_j(x) from P_j's replies (see psi.core.oprf)."""
        return self._submit(_unblind_task, a_inv, data, session_id, party)

    def passive_entries(self, ids: Sequence, salt: bytes, canon, k: bytes, rows, session_id: str, party: str,
                        t: bytes, index: int, m: int, total_in_share: bool, emit_total: bool) -> Future:
        """N-party, passive party: tag || stored value (|| R) of its own IDs (see psi.core.oprf)."""
        return self._submit(_entries_task, list(ids), salt, canon, k, rows, session_id, party, t, index, m,
                            total_in_share, emit_total)

    def okvs_encode(self, keys, values, session_id: str, party: str) -> Future:
        """(attempt, table bytes) of the OKVS of ``keys -> values`` with P_j's public seeds."""
        return self._submit(_okvs_task, keys, values, session_id, party)

    def warm_up(self) -> list[int]:
        """Start every worker now (spawning takes a moment) and return their pids."""
        if self.workers == 0:
            self._get()
            return []
        futures = [self._submit(_warm_task, 0.2) for _ in range(self.workers)]
        return sorted({f.result() for f in futures})

    def worker_pids(self) -> list[int]:
        ex = self._executor
        if isinstance(ex, ProcessPoolExecutor):
            return [p.pid for p in (getattr(ex, "_processes", None) or {}).values()]
        return []

    def peak_rss_bytes(self) -> int:
        """Peak RSS of this process plus every worker process (the whole party's footprint)."""
        return peak_rss_bytes() + sum(peak_rss_bytes(pid) for pid in self.worker_pids())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
