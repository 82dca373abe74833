"""How fast each peer may open new jobs at a passive node (node config `limits.open_jobs_per_minute`).

Every new job allows one PSI session, i.e. one look at this party's IDs, so the number of new jobs a peer may
open bounds how many looks it gets. A token bucket per calling identity: a peer may open up to the per-minute
limit at once, and one more every 60 / limit seconds after that. Only configured peers reach this point (the
caller is authenticated by mutual TLS first), so the table stays as small as the node's peer list.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class OpenJobLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        if per_minute < 1:
            raise ValueError(f"per_minute must be >= 1, got {per_minute}")
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, time of that count)

    def take(self, caller: str) -> float:
        """Spend one of `caller`'s tokens: 0.0 if it had one, else the seconds until it will (nothing spent)."""
        rate = self.per_minute / 60.0
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(caller, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / rate


class RateLimiter:
    """A token bucket per caller, refilled at `rate` per second up to `burst`; a call spends `cost` tokens.

    Online scoring charges one token per ID (node config `serving.rate_limits`), so a caller's IDs per second are
    bounded whatever it puts into one request. Rates may differ per caller (`rates`: caller -> (rate, burst)).
    """

    def __init__(self, rate: float, burst: float, rates: dict[str, tuple[float, float]] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate}, {burst}")
        self.default = (float(rate), float(burst))
        self.rates = {k: (float(r), float(b)) for k, (r, b) in (rates or {}).items()}
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def limits(self, caller: str) -> tuple[float, float]:
        return self.rates.get(caller, self.default)

    def take(self, caller: str, cost: float) -> float:
        """Spend `cost` of `caller`'s tokens: 0.0 if it had them, else the seconds until it will (nothing spent).

        A cost above the burst can never be paid at once: the wait then says how long the burst takes to refill,
        and the caller must split its request."""
        rate, burst = self.limits(caller)
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(caller, (burst, now))
            tokens = min(burst, tokens + (now - then) * rate)
            if tokens >= cost:
                self._buckets[caller] = (tokens - cost, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (min(cost, burst) - tokens) / rate
