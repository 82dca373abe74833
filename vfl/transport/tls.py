"""Mutual TLS for gRPC: credentials from a node's TLS files, and peer identity from a call's auth context.

The client pins the identity it expects: gRPC checks the server certificate against
``grpc.ssl_target_name_override``, so an address like ``bank-b.vfl.svc:50051`` can serve a certificate whose
DNS name is the party identity ``bank-b``. The server requires a client certificate from the same trust
bundle and maps the certificate's names to a configured peer.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterable

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from psi.identity import certificate_names
from psi.transport import keepalive
from psi.errors import PsiConfigError
from vfl.errors import ConfigError
from vfl.transport.certs import cert_identities

# Messages are chunked well below this; the limit only stops a peer from making us buffer gigabytes.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_MESSAGE_LIMITS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def _keepalive() -> keepalive.Keepalive:
    try:
        return keepalive.from_env()
    except PsiConfigError as exc:
        raise ConfigError(str(exc)) from None


def channel_options() -> list[tuple[str, object]]:
    """Options of every channel to a node or a PSI server: the client half of psi.transport.keepalive."""
    return _MESSAGE_LIMITS + _keepalive().client_options() + [
        # reconnect quickly after a peer restarts (gRPC's default back-off grows to two minutes)
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


def server_options() -> list[tuple[str, object]]:
    """Options of every server (the node, `vfl psi --serve`): the server half of psi.transport.keepalive."""
    return _MESSAGE_LIMITS + _keepalive().server_options() + [
        # refuse a port another process holds: gRPC sets SO_REUSEPORT by default, so a second node started on the
        # same port would bind without an error and the kernel would split the connections between the two
        ("grpc.so_reuseport", 0),
    ]


def _read(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls.{what}: cannot read {path}: {exc.strerror}") from None
    if not data.strip():
        raise ConfigError(f"tls.{what}: {path} is empty")
    return data


def load_tls_files(cert: Path, key: Path, ca: Path) -> tuple[bytes, bytes, bytes]:
    """Read and sanity-check a certificate, its key and the CA bundle; errors name the file and the problem."""
    cert_pem, key_pem, ca_pem = _read(cert, "cert"), _read(key, "key"), _read(ca, "ca")
    try:
        parsed = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError(f"tls.cert: {cert} is not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"tls.key: {key} is not an unencrypted PEM private key") from None
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise ConfigError(f"tls.ca: {ca} is not a PEM certificate bundle") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if (parsed.public_key().public_bytes(serialization.Encoding.PEM, pub)
            != private.public_key().public_bytes(serialization.Encoding.PEM, pub)):
        raise ConfigError(f"tls.key: {key} does not belong to the certificate {cert}")
    now = dt.datetime.now(dt.timezone.utc)
    if parsed.not_valid_after_utc < now:
        raise ConfigError(f"tls.cert: {cert} expired on {parsed.not_valid_after_utc:%Y-%m-%d}")
    return cert_pem, key_pem, ca_pem


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except Exception:  # noqa: BLE001 - another issuer's name, a bad signature or an unsupported key: not this one
        return False


def chains_to(cert: x509.Certificate, intermediates: list[x509.Certificate], roots: list[x509.Certificate],
              max_depth: int = 8) -> bool:
    """Whether `cert` is signed by one of `roots`, directly or through `intermediates` (the rest of its file)."""
    current = cert
    for _ in range(max_depth):
        if any(_issued_by(current, root) for root in roots):
            return True
        current = next((i for i in intermediates if i != current and _issued_by(current, i)), None)
        if current is None:
            return False
    return False


def check_own_certificate(cert: Path, key: Path, ca: Path, identity: str) -> None:
    """Refuse, at start-up, a certificate its peers would refuse: one not signed by the configured CA bundle, or
    one that does not carry this node's configured identity. Either would only show later, as every peer's
    handshake or identity check failing."""
    cert_pem, _, ca_pem = load_tls_files(cert, key, ca)
    chain = x509.load_pem_x509_certificates(cert_pem)
    roots = x509.load_pem_x509_certificates(ca_pem)
    if not chains_to(chain[0], chain[1:], roots):
        subjects = ", ".join(repr(r.subject.rfc4514_string()) for r in roots[:5])
        raise ConfigError(f"tls.cert: {cert} is issued by {chain[0].issuer.rfc4514_string()!r}, which does not chain "
                          f"to the CA bundle tls.ca {ca} ({subjects}); peers trusting that bundle would refuse it")
    names = cert_identities(chain[0])
    if identity not in names:
        raise ConfigError(f"tls.cert: {cert} carries the identities {names}, not this node's identity {identity!r} "
                          "(node config 'identity', by default the party name); peers expect that name and would "
                          "refuse this node")


def server_credentials(cert: Path, key: Path, ca: Path) -> grpc.ServerCredentials:
    cert_pem, key_pem, ca_pem = load_tls_files(cert, key, ca)
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True)


def channel_credentials(cert: Path, key: Path, ca: Path) -> grpc.ChannelCredentials:
    cert_pem, key_pem, ca_pem = load_tls_files(cert, key, ca)
    return grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)


def open_channel(address: str, credentials: grpc.ChannelCredentials | None, expected_identity: str | None,
                 extra_options: Iterable[tuple[str, object]] = ()) -> grpc.Channel:
    """A channel to a peer. With credentials, the server must present ``expected_identity``."""
    options = channel_options() + list(extra_options)
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    if expected_identity:
        options.append(("grpc.ssl_target_name_override", expected_identity))
    return grpc.secure_channel(address, credentials, options=options)


def peer_names(context: grpc.ServicerContext) -> list[str]:
    """The identities of the verified client certificate of this call (empty without TLS).

    Its DNS-name SANs; the subject CN only for a certificate without DNS-name SANs (as in RFC 6125, a CN is
    not consulted once DNS names are present, so a CN cannot add an identity). IP, email and URI SANs are not
    identities. The same rule as PSI's (:func:`psi.identity.certificate_names`).
    """
    auth = context.auth_context() or {}
    return certificate_names([v.decode() for v in auth.get("x509_subject_alternative_name", [])],
                             [v.decode() for v in auth.get("x509_common_name", [])])
