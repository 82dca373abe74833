"""Session settings (:class:`PsiConfig`) and per-party output (:class:`PsiResult`)."""
from __future__ import annotations

import os
import re
import secrets
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from psi.core.hashing import Canonicalization, canonical_id
from psi.errors import PsiConfigError
from psi.protocol.messages import Mode

MIN_CHUNK, MAX_CHUNK = 1, 65536          # points per message: 65536 x 32 B = 2 MiB < gRPC's 4 MiB limit
MAX_PARTIES = 16
_SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")

# progress(stage, done, total): called from the party's protocol thread.
Progress = Callable[[str, int, int], None]


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _SESSION_RE.match(session_id):
        raise PsiConfigError(f"session id {session_id!r} must be 1-128 characters of letters, digits, '._:-'")
    return session_id


def check_party_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PsiConfigError(f"party name {name!r} must be 1-128 characters of letters, digits, '._:@-'")
    return name


def new_session_id() -> str:
    return "psi-" + secrets.token_hex(12)


@dataclass
class PsiConfig:
    """What the active party decides for a session (passives take these from its hello), plus local knobs.

    Session parameters: ``strip``, ``lowercase``, ``mode``, ``chunk_size``, ``salt``, ``session_id``,
    ``metadata``. Local: ``workers`` (compute processes; None = os.cpu_count(), 0 = one thread in this
    process) and ``timeout`` (seconds without any progress before the session is abandoned).
    """

    strip: bool = True
    lowercase: bool = False
    mode: Mode | str = Mode.INTERSECTION
    chunk_size: int = 8192
    workers: Optional[int] = None
    timeout: float = 300.0
    session_id: Optional[str] = None
    salt: Optional[bytes] = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.mode = Mode(self.mode)
        except ValueError:
            raise PsiConfigError(f"mode must be 'intersection' or 'cardinality', got {self.mode!r}") from None
        if not isinstance(self.chunk_size, int) or not MIN_CHUNK <= self.chunk_size <= MAX_CHUNK:
            raise PsiConfigError(f"chunk_size must be an integer in [{MIN_CHUNK}, {MAX_CHUNK}], "
                                 f"got {self.chunk_size!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise PsiConfigError(f"workers must be None or an integer >= 0, got {self.workers!r}")
        if not self.timeout or self.timeout <= 0:
            raise PsiConfigError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if self.session_id is not None:
            check_session_id(self.session_id)
        if self.salt is not None and not (16 <= len(self.salt) <= 255):
            raise PsiConfigError(f"salt must be 16..255 bytes, got {len(self.salt)}")
        for k, v in self.metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise PsiConfigError(f"metadata must map str to str; got {k!r}: {v!r}")

    @property
    def canonicalization(self) -> Canonicalization:
        return Canonicalization(strip=self.strip, lowercase=self.lowercase)

    def resolved_workers(self) -> int:
        return (os.cpu_count() or 1) if self.workers is None else self.workers


class PsiResult:
    """One party's output.

    ``size``: |intersection|. ``set_sizes``: every party's input size. In intersection mode, ``rows`` are this
    party's input row indices of the common IDs in the agreed order (the same order at every party), and
    ``ids`` the canonical common IDs in that order (identical at every party; computed on first access).
    In cardinality mode both are None.

    A 2-party session leaves its rows on disk, in its encrypted spill (:mod:`psi.core.spill`): ``row_chunks``
    reads them in bounded memory, ``rows`` loads them all (once). ``close`` deletes the spill (so does garbage
    collection); read what you need first.
    """

    def __init__(self, *, party: str, session_id: str, mode: Mode, size: int, set_sizes: dict,
                 rows, id_source=None, canonicalization: Canonicalization | None = None,
                 peak_rss: int = 0, ids: Optional[list[str]] = None, spill=None):
        self.party = party
        self.session_id = session_id
        self.mode = Mode(mode)
        self.size = int(size)
        self.set_sizes = dict(set_sizes)
        self._rows = rows                         # ndarray, a spill's bucket file (Buckets), or None
        self.peak_rss = peak_rss
        self._id_source = id_source
        self._canon = canonicalization or Canonicalization()
        self._ids: Optional[list[str]] = ids      # the protocol may already have them (N-party digest)
        self._spill = spill
        self._finalizer = weakref.finalize(self, spill.close) if spill is not None else None

    @property
    def rows(self) -> Optional[np.ndarray]:
        if self._rows is None or isinstance(self._rows, np.ndarray):
            return self._rows
        self._rows = np.concatenate([np.zeros(0, dtype=np.int64), *self.row_chunks()])
        return self._rows

    def row_chunks(self, size: int = 1 << 20) -> Iterator[np.ndarray]:
        """The rows in the agreed order, at most ``size`` at a time (nothing in cardinality mode)."""
        if self._rows is None:
            return
        if isinstance(self._rows, np.ndarray):
            for start in range(0, len(self._rows), size):
                yield self._rows[start:start + size]
            return
        if self._spill is None or self._spill.closed:
            raise PsiConfigError("the result's rows were deleted with its spill (PsiResult.close)")
        for block in self._rows.blocks(0):
            rows = block["row"]
            for start in range(0, len(rows), size):
                yield rows[start:start + size]

    @property
    def ids(self) -> Optional[list[str]]:
        if self.rows is None:
            return None
        if self._ids is None:
            raw = self._id_source.gather(self.rows) if len(self.rows) else []
            self._ids = [canonical_id(v, self._canon, int(r)) for v, r in zip(raw, self.rows)]
        return self._ids

    def close(self) -> None:
        """Delete what the session left on disk (its rows, unless ``rows`` loaded them)."""
        if self._finalizer is not None:
            self._finalizer()

    def __repr__(self) -> str:
        return (f"PsiResult(party={self.party!r}, session={self.session_id!r}, mode={self.mode.value}, "
                f"size={self.size}, set_sizes={self.set_sizes})")
