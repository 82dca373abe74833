"""Errors a user can act on. The CLI prints these as one line; anything else is a bug."""


class VflError(Exception):
    """Base class for errors caused by input, configuration or a peer, not by a bug."""


class DataError(VflError):
    """A party's table is unusable; the message names the file, the column and the first bad row or value."""


class ConfigError(VflError):
    """A node config or job spec is invalid; the message names the offending key."""


class ProtocolError(VflError):
    """A peer sent something the protocol does not allow (wrong shape, session, order, or bytes)."""


class CryptoError(VflError):
    """A cryptographic operation was refused: overflow budget exceeded, malformed ciphertext, wrong key."""
