"""Counts of message kinds and bytes per peer, for the privacy report each party writes about its own view."""
from __future__ import annotations

import threading
from collections import defaultdict

from vfl.protocol.messages import sent_fields


class WireLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])

    def record(self, direction: str, peer: str, kind: str, nbytes: int) -> None:
        """direction: 'sent' or 'received'; kind: a message field name such as 'ForwardReply.z_ciphertexts'."""
        with self._lock:
            entry = self._counts[(direction, peer, kind)]
            entry[0] += 1
            entry[1] += int(nbytes)

    def record_message(self, direction: str, peer: str, message) -> None:
        """Record each field a message carries (vfl.protocol.messages.sent_fields) as its own kind."""
        name = type(message).__name__
        for field, size in sent_fields(message):
            self.record(direction, peer, f"{name}.{field}", size)

    def summary(self) -> list[dict]:
        with self._lock:
            return [{"direction": d, "peer": p, "kind": k, "messages": c, "bytes": b}
                    for (d, p, k), (c, b) in sorted(self._counts.items())]

    def kinds(self, direction: str | None = None) -> set[str]:
        with self._lock:
            return {k for (d, _, k) in self._counts if direction in (None, d)}
