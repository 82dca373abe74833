"""Counts of message kinds and bytes per peer, for the privacy report each party writes about its own view.

A job's ledger outlives the process that runs it: with a `journal`, every record is appended to
`<job>/wire-ledger.jsonl` as one line, and a ledger opened on an existing journal starts from its counts. So a
job resumed after a reconnect, a restart of this node or a restart of its peer reports everything that crossed the
wire for it, the rolled-back epochs included (issue 15: the passive's report once restarted from zero at every
resume). The journal is append-only, not written through the atomic writer: each line is one `os.write` of a
whole line, and a line torn by a crash of the machine itself is skipped when the journal is read.
"""
from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from pathlib import Path

from vfl.data.atomic import storage_error
from vfl.protocol.messages import sent_fields

JOURNAL = "wire-ledger.jsonl"


class WireLedger:
    def __init__(self, journal: Path | None = None, party: str | None = None) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._journal = Path(journal) if journal is not None else None
        self._party = party
        self._fd: int | None = None
        if self._journal is not None:
            self._replay(self._journal)

    def _replay(self, journal: Path) -> None:
        try:
            lines = journal.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return
        for line in lines:
            try:
                d, p, k, n = json.loads(line)
            except (ValueError, TypeError):  # a torn last line
                continue
            entry = self._counts[(str(d), str(p), str(k))]
            entry[0] += 1
            entry[1] += int(n)

    def _append(self, line: bytes) -> None:
        """Append one record. A journal that cannot be written (a full or read-only disk) is logged once and given
        up, and the counts go on in memory: the call it records still happens, and the job's next checkpoint or
        status write reports the disk to its submitter."""
        try:
            if self._fd is None:
                self._journal.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line)
        except OSError as exc:
            storage_error(exc, self._journal, "wire ledger", self._party)  # logs it
            self._journal = None

    def record(self, direction: str, peer: str, kind: str, nbytes: int) -> None:
        """direction: 'sent' or 'received'; kind: a message field name such as 'ForwardReply.z_ciphertexts'."""
        with self._lock:
            if self._journal is not None:
                self._append(json.dumps([direction, peer, kind, int(nbytes)]).encode() + b"\n")
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

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
