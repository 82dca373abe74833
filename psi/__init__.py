"""psi: ECDH private set intersection (X25519 + Elligator 2) for 2..N parties.

Layers: ``psi.core`` (crypto, no networking), ``psi.protocol`` (party state machines over links, in-process
API), ``psi.transport`` (gRPC service and client). ``psi`` never imports ``vfl``. See docs/psi.md.
"""
from psi.config import PsiConfig, PsiResult
from psi.core.hashing import Canonicalization
from psi.errors import (ConsistencyError, DuplicateIdError, InvalidPoint, MalformedMessage, OutOfOrder, PeerError,
                        PermissionDenied, ProtocolError, PsiConfigError, PsiError, PsiInputError, SessionTimeout,
                        WrongSession)
from psi.protocol.messages import Mode
from psi.protocol.session import run_in_process

__all__ = ["Canonicalization", "ConsistencyError", "DuplicateIdError", "InvalidPoint", "MalformedMessage", "Mode",
           "OutOfOrder", "PeerError", "PermissionDenied", "ProtocolError", "PsiConfig", "PsiConfigError", "PsiError",
           "PsiInputError", "PsiResult", "SessionTimeout", "WrongSession", "run_in_process"]
