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
    return _MESSAGE_LIMITS + _keepalive().server_options()


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
