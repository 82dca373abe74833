"""What a peer hears about an unexpected exception: an error id, never the exception's text or type.

An exception a node did not raise on purpose (a bug, a failing disk, an operator's own code) can carry what its
operator would never send to a peer: file paths, IDs, values. The peer gets only::

    internal error at <party> (error id 3f9c1a2b); details are in that node's log

and the node's own log gets the same id with the full exception and traceback, so the two operators can match
a failure without the peer reading it. Errors a peer caused are reported differently: their messages are
written to be peer-safe and tell the peer what to fix.
"""
from __future__ import annotations

import logging
import secrets
from typing import Optional

log = logging.getLogger("psi.errors")

_ID_ATTRIBUTE = "_peer_error_id"

#: a status detail travels percent-encoded in the trailing metadata, which gRPC limits to 8 KiB by default; a
#: longer one is dropped on the way, and the caller learns only that the metadata was too large
MAX_DETAIL_BYTES = 4096


def fit_status_detail(text: str) -> str:
    """`text` cut so that its percent-encoded form stays under MAX_DETAIL_BYTES (a non-ASCII byte takes three)."""
    size = 0
    for i, ch in enumerate(text):
        size += 1 if " " <= ch <= "~" and ch != "%" else 3 * len(ch.encode("utf-8", "replace"))
        if size > MAX_DETAIL_BYTES - 64:
            return f"{text[:i]}... [{len(text) - i} more characters]"
    return text


def logged_error_id(exc: BaseException, party: str, during: str, logger: Optional[logging.Logger] = None,
                    kind: str = "internal error") -> str:
    """A fresh random id for `exc`, logged here with the exception and its traceback the first time.

    An exception reported twice (an abort message, then the RPC status) keeps its id and is logged once.
    """
    error_id = getattr(exc, _ID_ATTRIBUTE, None)
    if error_id is None:
        error_id = secrets.token_hex(4)
        try:
            setattr(exc, _ID_ATTRIBUTE, error_id)
        except AttributeError:  # an exception type without __dict__: a second report gets its own id
            pass
        (logger or log).error("%s at %s (error id %s) %s", kind, party, error_id, during,
                              exc_info=(type(exc), exc, exc.__traceback__))
    return error_id


def internal_error_detail(exc: BaseException, party: str, during: str,
                          logger: Optional[logging.Logger] = None) -> str:
    """The peer-safe text for `exc`; logs `exc` with its traceback under a fresh random id the first time."""
    error_id = logged_error_id(exc, party, during, logger)
    return f"internal error at {party} (error id {error_id}); details are in that node's log"
