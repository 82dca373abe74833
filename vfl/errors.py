"""Errors a user or a peer can act on. The CLI prints these as one line; anything else is a bug.

Every class names the status a peer sees it as (``status``, a gRPC status-code name, as in ``psi.errors``), so
the transport maps errors to statuses without knowing the job runtime, and the in-process link of the tests
reports them exactly as the gRPC one does. An exception that is not a :class:`VflError` is internal: a peer
gets an error id, never its text (``psi.error_ids``).
"""
from __future__ import annotations

INTERNAL = "INTERNAL"

#: longest message an error carries. A message travels as one log line, a job event, and a gRPC status detail
#: (trailing metadata, 8 KiB by default), so a 30 MB cell quoted in it must not travel whole.
MAX_MESSAGE_CHARS = 4000


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to at most `limit` characters plus a note of how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


#: longest quotation of a refused value (a cell, an ID, a spec value) in an error message
QUOTE_CHARS = 80


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, cut to `limit` characters with a note of how much was left out."""
    return shorten(repr(value), limit)


class VflError(Exception):
    """Base class for errors caused by input, configuration or a peer, not by a bug.

    A message longer than :data:`MAX_MESSAGE_CHARS` is shortened here, once for every error class.
    """

    status = INTERNAL

    def __init__(self, *args: object):
        if len(args) == 1 and isinstance(args[0], str):
            args = (shorten(args[0]),)
        super().__init__(*args)


class DataError(VflError):
    """A party's table is unusable; the message names the file, the column and the first bad row or value."""

    status = "INVALID_ARGUMENT"


class ConfigError(VflError):
    """A node config or job spec is invalid; the message names the offending key."""

    status = "INVALID_ARGUMENT"


class ProtocolError(VflError):
    """A peer sent something the protocol does not allow (wrong shape, session, order, or bytes)."""

    status = "INVALID_ARGUMENT"


class PayloadTooLarge(ProtocolError):
    """A message is larger than the receiver's limit (node config ``max_payload_mb``)."""

    status = "RESOURCE_EXHAUSTED"


class CryptoError(VflError):
    """A cryptographic operation was refused: overflow budget exceeded, malformed ciphertext, wrong key."""

    status = "INVALID_ARGUMENT"


class NotFound(VflError):
    """Unknown job or session."""

    status = "NOT_FOUND"


class OutOfOrder(VflError):
    """A message arrived in a state where the protocol does not allow it."""

    status = "FAILED_PRECONDITION"


class PermissionDenied(VflError):
    """The caller's certificate identity is not allowed to make this call."""

    status = "PERMISSION_DENIED"


class TooManyRequests(VflError):
    """The caller is over one of this node's limits (node config `limits`); it may try again later."""

    status = "RESOURCE_EXHAUSTED"


class StorageError(VflError):
    """A party cannot write one of its job's files: a full disk, a read-only or unwritable jobs_dir.

    The message names the party, the kind of file and the cause, never the full path (it may reach a peer); the
    path is in that node's log. Not recoverable by waiting, so the job fails at once: RESOURCE_EXHAUSTED for a full
    disk or a file-size limit, FAILED_PRECONDITION for a read-only or unwritable folder.
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        import errno as codes
        self.errno = errno
        self.status = "RESOURCE_EXHAUSTED" if errno in (codes.ENOSPC, codes.EDQUOT, codes.EFBIG) \
            else "FAILED_PRECONDITION"

    def __reduce__(self):
        return (self.__class__, (self.args[0], self.errno))


class SealedFileError(VflError):
    """A job file encrypted at rest cannot be opened: the key it was sealed with is not configured (lost, replaced,
    or rotated out), or the file changed after it was written. The message names the job and file, not the path."""

    status = "FAILED_PRECONDITION"


class SealedFileChanged(SealedFileError):
    """A sealed job file fails its AES-GCM tag (changed or cut after it was written)."""


class Unavailable(VflError):
    """This node is shutting down (drained on SIGTERM): the caller may try again once it is back."""

    status = "UNAVAILABLE"


class Cancelled(VflError):
    """A job was cancelled by its submitter or an operator; it stops at every party."""

    status = "CANCELLED"


class JobFailed(VflError):
    """A job cannot go on (for example a peer lost the checkpoint a resume needs)."""


def status_of(exc: BaseException) -> str:
    """The status name a peer sees ``exc`` as; INTERNAL for anything that is not a VflError."""
    return exc.status if isinstance(exc, VflError) else INTERNAL


#: statuses after which a call to a peer may succeed again once the peer is back (a restart, a network cut)
RECOVERABLE = frozenset({"UNAVAILABLE", "NOT_FOUND", "CANCELLED", "DEADLINE_EXCEEDED"})


class PeerCallError(VflError):
    """A call to a peer failed; ``code`` is the status name it failed with (gRPC's, or the in-process link's)."""

    def __init__(self, peer: str, method: str, code: str, detail: str):
        super().__init__(f"peer {peer!r}: {method} failed with {code}: {detail}")
        self.peer, self.method, self.code, self.detail = peer, method, code, detail

    @property
    def recoverable(self) -> bool:
        return self.code in RECOVERABLE
