"""Typed protocol messages. Transports carry them (gRPC maps them 1:1 to ``psi.v1.Envelope``); the
in-process API passes them directly. Every message names its session."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

PROTOCOL_VERSION = 1


class Mode(str, enum.Enum):
    INTERSECTION = "intersection"   # every party learns the common IDs and its rows
    CARDINALITY = "cardinality"     # every party learns only |intersection|


class Stage(enum.IntEnum):
    """What a bulk chunk carries. Widths are bytes per item."""

    BLINDED = 1      # 2-party, both ways: H(id)^k of the sender's own IDs, sender's random order      (32)
    DOUBLE = 2       # 2-party, both ways: the peer's BLINDED points with the sender's key applied       (16)
    PASSIVE_T = 3    # N-party, Pj -> A: H(y)^t, Pj's random order                                        (32)
    ACTIVE_S = 4     # N-party, A -> helper: H(x)^s, A's random order                                     (32)
    ACTIVE_ST = 5    # N-party, helper -> comparer (sealed, relayed by A): H(x)^(st), A's order           (16)
    PASSIVE_TS = 6   # N-party, A -> comparer: H(y)^(ts) of passive `list`, shuffled by A                  (16)
    MATCH = 7        # N-party, comparer -> A: per common item, its index in A's list and each shuffled list
    ALIGN = 8        # N-party, A -> Pj: positions (in Pj's PASSIVE_T order) of the common items            (8)
    KEY = 9          # N-party, comparer -> Pj (sealed, relayed by A): the passives' shared key t         (32)


WIDTH = {Stage.BLINDED: 32, Stage.DOUBLE: 16, Stage.PASSIVE_T: 32, Stage.ACTIVE_S: 32, Stage.ACTIVE_ST: 16,
         Stage.PASSIVE_TS: 16, Stage.ALIGN: 8, Stage.KEY: 32}


@dataclass(frozen=True)
class Hello:
    """Active -> each passive: opens a session and fixes its parameters."""

    session_id: str
    salt: bytes
    strip: bool
    lowercase: bool
    mode: Mode
    parties: tuple[str, ...]          # active first, then the passives in role order
    recipient: str                    # the passive this hello is for
    size: int                         # |X| of the active party
    chunk_size: int
    metadata: dict = field(default_factory=dict)   # host-defined, e.g. {"job_id": ...}; never IDs
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class HelloReply:
    session_id: str
    size: int
    ephemeral_key: bytes = b""        # N-party only: for end-to-end sealing between passives


@dataclass(frozen=True)
class Roster:
    """N-party, active -> every passive: all set sizes and the passives' ephemeral public keys."""

    session_id: str
    sizes: dict
    keys: dict


@dataclass(frozen=True)
class Chunk:
    session_id: str
    stage: Stage
    index: int                        # chunk number within (stage, list), from 0, consecutive
    count: int                        # items in this chunk
    data: bytes
    list: str = ""                    # N-party: whose list (PASSIVE_TS) or empty


@dataclass(frozen=True)
class Sealed:
    """N-party: a chunk encrypted end-to-end between two passives and relayed by the active party."""

    session_id: str
    stage: Stage
    sender: str
    recipient: str
    index: int
    count: int
    ciphertext: bytes


@dataclass(frozen=True)
class Count:
    """N-party: the intersection size (comparer -> active, then active -> every passive)."""

    session_id: str
    count: int


@dataclass(frozen=True)
class Done:
    """Final confirmation: the sender's intersection size and a digest of the common blinded values."""

    session_id: str
    count: int
    digest: bytes = b""


@dataclass(frozen=True)
class Abort:
    session_id: str
    code: str
    reason: str


Message = Hello | HelloReply | Roster | Chunk | Sealed | Count | Done | Abort
