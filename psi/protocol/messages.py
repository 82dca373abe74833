"""Typed protocol messages. Transports carry them (gRPC maps them 1:1 to ``psi.v1.Envelope``); the
in-process API passes them directly. Every message names its session."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

PROTOCOL_VERSION = 2   # 2: the N-party protocol with OPRF + OKVS + zero-sharing


class Mode(str, enum.Enum):
    INTERSECTION = "intersection"   # every party learns the common IDs and its rows
    CARDINALITY = "cardinality"     # every party learns only |intersection|


class Stage(enum.IntEnum):
    """What a bulk chunk carries. Widths are bytes per item. (Numbers 3-7 belonged to the first N-party
    protocol, which leaked partial-intersection sizes; they are retired.)"""

    BLINDED = 1      # 2-party both ways, and N-party cardinality A <-> P1: H(item)^k, sender's order       (32)
    DOUBLE = 2       # the peer's BLINDED points with the sender's key applied (N-party: returned sorted)  (16)
    ALIGN = 8        # N-party, A -> Pj: tag_j(x) of every common x, in the agreed order                   (16)
    KEY = 9          # N-party, P1 -> Pj (sealed, relayed by A): the passives' shared key t              (32)
    QUERY = 10       # N-party, A -> every Pj: X25519(a, H(x)), A's random order                          (32)
    REPLY = 11       # N-party, Pj -> A: X25519(k_j, query) for each QUERY item, in the order received     (32)
    OKVS = 12        # N-party, Pj -> A: the cells of Pj's OKVS table {tag_j(y) -> v_j(y)}                 (16)


WIDTH = {Stage.BLINDED: 32, Stage.DOUBLE: 16, Stage.ALIGN: 16, Stage.KEY: 32, Stage.QUERY: 32, Stage.REPLY: 32,
         Stage.OKVS: 16}


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
    index: int                        # chunk number within its stream, from 0, consecutive
    count: int                        # items in this chunk
    data: bytes


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
class Table:
    """N-party, Pj -> A: Pj's OKVS follows as ``cells`` 16-byte cells (``OKVS`` chunks), hashed with the
    public seed of ``attempt``. ``cells`` must equal ``okvs.table_cells(|Yj|, attempt)``."""

    session_id: str
    attempt: int
    cells: int


@dataclass(frozen=True)
class Count:
    """N-party, active -> every passive: the intersection size."""

    session_id: str
    count: int


@dataclass(frozen=True)
class Done:
    """Final confirmation: the sender's intersection size and a digest of the common values (2-party: the
    doubly-blinded values; N-party: the canonical IDs, see multi_party.ids_digest)."""

    session_id: str
    count: int
    digest: bytes = b""


@dataclass(frozen=True)
class Abort:
    session_id: str
    code: str
    reason: str


Message = Hello | HelloReply | Roster | Chunk | Sealed | Table | Count | Done | Abort
