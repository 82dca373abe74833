"""Errors a user or operator can act on. Every message names the session, peer, stage, chunk, row or ID involved.

Each class carries ``grpc_code``, the *name* of the gRPC status code the transport reports it with (the
crypto core and the protocol never import grpc). Protocol errors raised on a serving party travel back to
the connecting party as that status; errors reported by a peer arrive as :class:`PeerError`.
"""
from __future__ import annotations


#: longest message an error shows: it becomes a log line and a gRPC status detail (trailing metadata, 8 KiB)
MAX_MESSAGE_CHARS = 2000


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters plus a note of how many were left out."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


class PsiError(Exception):
    """Base class of every error the psi package raises on purpose. Its text is cut to MAX_MESSAGE_CHARS, so an
    ID of megabytes quoted in it cannot become a megabyte log line or status."""

    grpc_code = "UNKNOWN"

    def __reduce__(self):  # keep subclasses picklable across the worker process pool
        return (self.__class__, self.args)

    def __str__(self) -> str:
        return clip(super().__str__(), MAX_MESSAGE_CHARS)


# ----------------------------------------------------------------------------- local input / configuration
class PsiConfigError(PsiError, ValueError):
    """An invalid PSI setting (chunk size, mode, worker count, party names, ...)."""

    grpc_code = "INVALID_ARGUMENT"


class PsiInputError(PsiError, ValueError):
    """This party's IDs are unusable: a null, a non-string, or an ID that is empty after canonicalization."""

    grpc_code = "FAILED_PRECONDITION"


class DuplicateIdError(PsiInputError):
    """Two rows of this party's input have the same canonical ID; the message names the ID and both rows."""


# ----------------------------------------------------------------------------- peer misbehaviour
class ProtocolError(PsiError):
    """A peer sent something the protocol does not allow."""

    grpc_code = "INVALID_ARGUMENT"


class MalformedMessage(ProtocolError):
    """Wrong field values or sizes: chunk length, point count, unknown stage, bad session id format."""


class InvalidPoint(ProtocolError):
    """A peer's point is not a canonical, non-low-order point of curve25519 (wrong length, twist, u >= p, ...).

    ``index`` is the position of the offending point within the batch that was checked (-1 if unknown).
    """

    def __init__(self, message: str, index: int = -1):
        super().__init__(message, index)
        self.index = index

    def __str__(self) -> str:
        return clip(self.args[0], MAX_MESSAGE_CHARS)


class WrongSession(ProtocolError):
    """A message names a different session than the one the stream belongs to."""


class OutOfOrder(ProtocolError):
    """A message arrived at a point of the protocol where it is not allowed (or a chunk index was skipped)."""

    grpc_code = "FAILED_PRECONDITION"


class SessionExists(ProtocolError):
    """A session id was reused on a server that already ran (or is running) a session with that id."""

    grpc_code = "ALREADY_EXISTS"


class ConsistencyError(ProtocolError):
    """The parties computed different results (the final confirmation did not match)."""

    grpc_code = "ABORTED"


class TooLarge(ProtocolError):
    """A peer declared a set (or table) larger than this party can hold; refused before anything is sent."""

    grpc_code = "RESOURCE_EXHAUSTED"


# ----------------------------------------------------------------------------- authorization / liveness
class PermissionDenied(PsiError):
    """The serving party's ID provider refused this peer or dataset."""

    grpc_code = "PERMISSION_DENIED"


class SessionTimeout(PsiError):
    """Nothing happened for longer than the configured timeout."""

    grpc_code = "DEADLINE_EXCEEDED"


class PeerError(PsiError):
    """A peer aborted the session, or the connection to it failed. ``code`` is a gRPC status code name."""

    grpc_code = "ABORTED"

    def __init__(self, message: str, peer: str = "", code: str = "UNKNOWN"):
        super().__init__(message, peer, code)
        self.peer = peer
        self.code = code

    def __str__(self) -> str:
        return clip(self.args[0], MAX_MESSAGE_CHARS)
