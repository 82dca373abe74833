"""Protocol messages <-> ``psi.v1.Envelope``. Decoding checks structure (a body is present, enums are known,
chunk sizes are within limits); the protocol checks everything that depends on the session state."""
from __future__ import annotations

from psi.config import MAX_CHUNK
from psi.errors import MalformedMessage
from psi.protocol.messages import (Abort, Chunk, Count, Done, Hello, HelloReply, Message, Mode, Roster, Sealed,
                                   Stage, Table)
from psi.transport import psi_pb2 as pb

MAX_ITEMS = MAX_CHUNK
MAX_DATA = 4 << 20        # bytes of bulk data in one envelope (chunks are <= 2 MiB by construction)

_MODE_TO_PB = {Mode.INTERSECTION: pb.INTERSECTION, Mode.CARDINALITY: pb.CARDINALITY}
_MODE_FROM_PB = {v: k for k, v in _MODE_TO_PB.items()}


def encode(msg: Message) -> pb.Envelope:
    sid = msg.session_id
    if isinstance(msg, Chunk):
        return pb.Envelope(session_id=sid, chunk=pb.Chunk(stage=int(msg.stage), index=msg.index, count=msg.count,
                                                          data=msg.data))
    if isinstance(msg, Sealed):
        return pb.Envelope(session_id=sid, sealed=pb.Sealed(stage=int(msg.stage), sender=msg.sender,
                                                            recipient=msg.recipient, index=msg.index,
                                                            count=msg.count, ciphertext=msg.ciphertext))
    if isinstance(msg, Hello):
        return pb.Envelope(session_id=sid, hello=pb.Hello(
            version=msg.version, salt=msg.salt, strip=msg.strip, lowercase=msg.lowercase,
            mode=_MODE_TO_PB[msg.mode], parties=list(msg.parties), recipient=msg.recipient, size=msg.size,
            chunk_size=msg.chunk_size, metadata=dict(msg.metadata)))
    if isinstance(msg, HelloReply):
        return pb.Envelope(session_id=sid, hello_reply=pb.HelloReply(size=msg.size, ephemeral_key=msg.ephemeral_key))
    if isinstance(msg, Roster):
        return pb.Envelope(session_id=sid, roster=pb.Roster(sizes=dict(msg.sizes), keys=dict(msg.keys)))
    if isinstance(msg, Table):
        return pb.Envelope(session_id=sid, table=pb.Table(attempt=msg.attempt, cells=msg.cells))
    if isinstance(msg, Count):
        return pb.Envelope(session_id=sid, count=pb.Count(count=msg.count))
    if isinstance(msg, Done):
        return pb.Envelope(session_id=sid, done=pb.Done(count=msg.count, digest=msg.digest))
    if isinstance(msg, Abort):
        return pb.Envelope(session_id=sid, abort=pb.Abort(code=msg.code, reason=msg.reason[:2000]))
    raise TypeError(f"cannot encode {type(msg).__name__}")


def _stage(value: int, where: str) -> Stage:
    try:
        return Stage(value)
    except ValueError:
        raise MalformedMessage(f"{where}: unknown stage {value}") from None


def decode(env: pb.Envelope) -> Message:
    sid = env.session_id
    kind = env.WhichOneof("body")
    where = f"session {sid}: {kind or 'message'}"
    if kind == "chunk":
        c = env.chunk
        if c.count > MAX_ITEMS or len(c.data) > MAX_DATA:
            raise MalformedMessage(f"{where} {c.index} carries {c.count} items / {len(c.data)} bytes; at most "
                                   f"{MAX_ITEMS} items and {MAX_DATA} bytes per chunk")
        return Chunk(sid, _stage(c.stage, where), c.index, c.count, c.data)
    if kind == "sealed":
        s = env.sealed
        if s.count > MAX_ITEMS or len(s.ciphertext) > MAX_DATA:
            raise MalformedMessage(f"{where} {s.index} is too large ({s.count} items, {len(s.ciphertext)} bytes)")
        return Sealed(sid, _stage(s.stage, where), s.sender, s.recipient, s.index, s.count, s.ciphertext)
    if kind == "hello":
        h = env.hello
        if h.mode not in _MODE_FROM_PB:
            raise MalformedMessage(f"{where}: unknown mode {h.mode}")
        return Hello(session_id=sid, salt=h.salt, strip=h.strip, lowercase=h.lowercase, mode=_MODE_FROM_PB[h.mode],
                     parties=tuple(h.parties), recipient=h.recipient, size=h.size, chunk_size=h.chunk_size,
                     metadata=dict(h.metadata), version=h.version)
    if kind == "hello_reply":
        return HelloReply(sid, env.hello_reply.size, env.hello_reply.ephemeral_key)
    if kind == "roster":
        return Roster(sid, dict(env.roster.sizes), dict(env.roster.keys))
    if kind == "table":
        return Table(sid, env.table.attempt, env.table.cells)
    if kind == "count":
        return Count(sid, env.count.count)
    if kind == "done":
        return Done(sid, env.done.count, env.done.digest)
    if kind == "abort":
        return Abort(sid, env.abort.code, env.abort.reason)
    raise MalformedMessage(f"session {sid}: envelope carries no message")
