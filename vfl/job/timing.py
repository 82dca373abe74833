"""Where a party's time goes during a job: encryption, decryption, matrix products, torch, transport, and
waiting while a peer works."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

_CATEGORY = {"encrypt_ints": "encrypt", "rerandomize": "encrypt", "decrypt_ints": "decrypt",
             "multiexp": "matrix products", "add_plain": "matrix products"}


class Timer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def measure(self, category: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            with self.lock:
                self.seconds[category] += time.perf_counter() - start

    def add(self, category: str, seconds: float) -> None:
        with self.lock:
            self.seconds[category] += seconds

    def summary(self) -> dict[str, float]:
        with self.lock:
            return {k: round(v, 3) for k, v in sorted(self.seconds.items())}


class TimedOps:
    """A Paillier engine whose heavy calls are charged to a Timer; everything else passes through."""

    def __init__(self, ops, timer: Timer):
        self._ops = ops
        self._timer = timer

    def __getattr__(self, name: str):
        attr = getattr(self._ops, name)
        category = _CATEGORY.get(name)
        if category is None or not callable(attr):
            return attr

        def timed(*args, **kwargs):
            with self._timer.measure(category):
                return attr(*args, **kwargs)
        return timed
