"""End-to-end sealing between two passive parties whose messages are relayed by the active party.

Each passive publishes an ephemeral X25519 public key in the session hello reply; the active party relays
the keys (it is semi-honest: it forwards them unchanged). A pair of passives derives a ChaCha20-Poly1305
key with HKDF-SHA256 from their X25519 shared secret, salted with the session id and bound to both names.
Every sealed message has a unique nonce (stage, direction, index) and authenticates its header as AAD, so
the relay can neither read nor undetectably alter, reorder or replay what it forwards.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from psi.errors import InvalidPoint, ProtocolError

INFO = b"vfl-psi-v1 e2e"


class EphemeralKey:
    """This party's ephemeral X25519 key pair for one session."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = self._private.public_key().public_bytes_raw()

    def channel(self, me: str, peer: str, peer_public: bytes, session_id: str) -> "SealedChannel":
        if len(peer_public) != 32:
            raise InvalidPoint(f"ephemeral key of {peer!r} is {len(peer_public)} bytes, expected 32")
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:
            raise InvalidPoint(f"ephemeral key of {peer!r} is a low-order point") from None
        lo, hi = sorted((me, peer))
        info = INFO + b"|" + lo.encode() + b"|" + hi.encode()
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=session_id.encode(), info=info).derive(shared)
        return SealedChannel(me, peer, session_id, ChaCha20Poly1305(key))


@dataclass
class SealedChannel:
    me: str
    peer: str
    session_id: str
    aead: ChaCha20Poly1305

    def _nonce(self, sender: str, stage: int, index: int) -> bytes:
        direction = 0 if sender < (self.peer if sender == self.me else self.me) else 1
        return struct.pack(">BBHQ", stage & 0xFF, direction, 0, index)

    def _aad(self, sender: str, recipient: str, stage: int, index: int, count: int) -> bytes:
        return "|".join((self.session_id, sender, recipient, str(stage), str(index), str(count))).encode()

    def seal(self, stage: int, index: int, count: int, plaintext: bytes) -> bytes:
        nonce = self._nonce(self.me, stage, index)
        return self.aead.encrypt(nonce, plaintext, self._aad(self.me, self.peer, stage, index, count))

    def open(self, stage: int, index: int, count: int, ciphertext: bytes) -> bytes:
        nonce = self._nonce(self.peer, stage, index)
        try:
            return self.aead.decrypt(nonce, ciphertext, self._aad(self.peer, self.me, stage, index, count))
        except InvalidTag:
            raise ProtocolError(f"sealed message from {self.peer!r} (stage {stage}, chunk {index}) fails "
                                "authentication: altered in transit or keys disagree") from None
