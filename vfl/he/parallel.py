"""Running engine work on several cores: serial, GIL-releasing threads, or a spawn process pool.

The engine splits a vectorized operation into independent chunks (task function + picklable arguments) and
hands them to an executor; results come back in order.

* ``workers=1``: :class:`SerialExecutor` runs the chunks on the calling thread -- no pool, no threads.
* ``backend="thread"``: a thread pool whose threads set gmpy2's ``allow_release_gil``, so every big-number
  multiplication, reduction and powmod (and gmpy2's ``powmod_base_list``, which always releases it) runs
  outside the GIL. Threads share caches (fixed-base tables are built once) and pass no data.
* ``backend="process"``: a ``ProcessPoolExecutor`` with the *spawn* start method (gRPC and fork() do not
  mix). Each worker process keeps its own caches; arguments and results are pickled. As with any spawn
  pool, a script that uses it must keep its top-level code under ``if __name__ == "__main__":`` (console
  scripts, pytest and notebooks already do); a worker process never starts a pool of its own.

``backend="auto"`` picks the spawn process pool: measured on this 2-core machine when it was quiet
(benchmarks/he_bench.py, docs/he.md; under load from other work the gain of either backend shrinks or vanishes)
it gains 1.6-1.95x on encryption, decryption and multi-exponentiation, while GIL-releasing
threads gain 1.95x on decryption (pure powmod lists) but only 1.1-1.7x on the Python-driven loops
(encryption, products) because every multiplication re-acquires the GIL. Override with the VFL_HE_BACKEND
environment variable ("thread" or "process").
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import Executor as _FuturesExecutor
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Sequence

import gmpy2

BACKENDS = ("thread", "process")


def _gil_released(fn: Callable, args: tuple) -> Any:
    with gmpy2.context(gmpy2.get_context(), allow_release_gil=True):
        return fn(*args)


def run_released(fn: Callable, *args: Any) -> Any:
    """Call fn(*args) with gmpy2 releasing the GIL in big-number operations (lets other threads run)."""
    return _gil_released(fn, args)


class SerialExecutor:
    """workers=1: every chunk runs on the caller's thread, in order."""
    workers = 1
    backend = "serial"

    def map(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        return [_gil_released(fn, args) for args in arg_list]

    def close(self) -> None:
        pass


class PoolExecutor:
    """Chunks run concurrently on a thread or spawn-process pool shared by all engines with these settings."""

    def __init__(self, workers: int, backend: str, pool: _FuturesExecutor):
        self.workers = workers
        self.backend = backend
        self._pool = pool

    def map(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        if len(arg_list) <= 1:
            return [_gil_released(fn, args) for args in arg_list]
        futures = [self._pool.submit(_gil_released, fn, args) for args in arg_list]
        return [f.result() for f in futures]

    def close(self) -> None:  # shared pools are closed at interpreter exit
        pass


_POOLS: dict[tuple[str, int], _FuturesExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _shutdown_pools() -> None:
    with _POOLS_LOCK:
        for pool in _POOLS.values():
            pool.shutdown(wait=False, cancel_futures=True)
        _POOLS.clear()


atexit.register(_shutdown_pools)


def default_backend() -> str:
    backend = os.environ.get("VFL_HE_BACKEND", "process").strip().lower()
    return backend if backend in BACKENDS else "process"


def get_executor(workers: int = 1, backend: str = "auto") -> SerialExecutor | PoolExecutor:
    """An executor for `workers` cores; workers=1 never creates a pool."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if workers == 1 or multiprocessing.parent_process() is not None:
        # inside a worker process (e.g. an unguarded script being re-imported by spawn): never nest pools
        return SerialExecutor()
    backend = default_backend() if backend == "auto" else backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown parallel backend {backend!r}; use one of {BACKENDS} or 'auto'")
    with _POOLS_LOCK:
        pool = _POOLS.get((backend, workers))
        if pool is None:
            if backend == "thread":
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vfl-he")
            else:
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            _POOLS[(backend, workers)] = pool
    return PoolExecutor(workers, backend, pool)


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting range(count) into at most `parts` nearly equal non-empty pieces."""
    parts = max(1, min(parts, count))
    bounds = [count * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts) if bounds[k + 1] > bounds[k]]
