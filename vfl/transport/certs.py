"""A development certificate authority and party certificates for mutual TLS.

Production deployments bring their own PKI (or cert-manager); these helpers make the demo and tests use
real mutual TLS with the same file layout: ``ca.crt`` for the trust bundle, ``tls.crt``/``tls.key`` for a
party (the names Kubernetes TLS secrets use). A party's identity is a DNS subject-alternative name, which
peers check against the ``identity`` of their peer entry.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from psi.identity import certificate_names

from vfl.errors import ConfigError


# RFC 1123 host names: dot-separated labels of letters, digits and '-' (not at either end), 1-63 characters each,
# at most 253 in all. A peer checks a certificate's DNS names against its config, so a name outside this
# form (a space, an underscore, a wildcard) would be a certificate no correctly configured peer ever accepts.
_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def check_dns_name(value: str, what: str) -> str:
    """`value` if it is a valid DNS host name, else a ConfigError naming `what` and the rule it breaks."""
    if not value or len(value) > 253:
        raise ConfigError(f"{what} {value!r} is not a valid DNS name: it must have 1 to 253 characters")
    for label in value.split("."):
        if not _DNS_LABEL.match(label):
            raise ConfigError(f"{what} {value!r} is not a valid DNS name: each dot-separated part must be 1-63 "
                              "letters, digits or '-', not starting or ending with '-' (no spaces, '_' or '*')")
    return value


def _check_ips(ips: tuple[str, ...]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for ip in ips:
        try:
            out.append(ipaddress.ip_address(ip))
        except ValueError:
            raise ConfigError(f"IP address {ip!r} is not a valid IPv4 or IPv6 address") from None
    return out


@dataclass(frozen=True)
class IssuedCert:
    cert: Path
    key: Path
    ca: Path


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_ca(out_dir: str | Path, name: str = "vfl development CA", days: int = 365,
              overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``ca.crt`` and ``ca.key`` (a self-signed P-256 CA) into out_dir; returns their paths.

    An existing CA is kept unless ``overwrite``: replacing its key silently would orphan every certificate it
    signed (peers stop accepting them) and lose the key that signs new ones.
    """
    out = Path(out_dir)
    existing = [p.name for p in (out / "ca.crt", out / "ca.key") if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{out} already holds a CA ({', '.join(existing)}); refusing to overwrite it, since "
                          "certificates it signed would stop working (use --force to replace it)")
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(out / "ca.key", _key_pem(key))
    return out / "ca.crt", out / "ca.key"


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt, key = ca_dir / "ca.crt", ca_dir / "ca.key"
    for p in (crt, key):
        if not p.is_file():
            raise ConfigError(f"CA directory {ca_dir}: missing {p.name} (create one with `vfl certs ca`)")
    return (x509.load_pem_x509_certificate(crt.read_bytes()),
            serialization.load_pem_private_key(key.read_bytes(), password=None))


def issue_party_cert(ca_dir: str | Path, identity: str, out_dir: str | Path, extra_dns: tuple[str, ...] = (),
                     ips: tuple[str, ...] = ("127.0.0.1",), days: int = 90) -> IssuedCert:
    """Issue a certificate for ``identity`` (server and client auth) signed by the CA in ca_dir.

    Writes ``tls.crt``, ``tls.key`` and a copy of the CA as ``ca.crt`` into out_dir.
    """
    ca_dir, out = Path(ca_dir), Path(out_dir)
    check_dns_name(identity, "identity")
    for name in extra_dns:
        check_dns_name(name, "DNS name")
    addresses = _check_ips(ips)
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")
    ca_cert, ca_key = _load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    names: list[x509.GeneralName] = [x509.DNSName(identity)] + [x509.DNSName(d) for d in extra_dns if d != identity]
    names += [x509.IPAddress(ip) for ip in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(out / "tls.key", _key_pem(key))
    (out / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return IssuedCert(cert=out / "tls.crt", key=out / "tls.key", ca=out / "ca.crt")


def certificate_identities(pem: bytes) -> list[str]:
    """The names a peer entry's ``identity`` may match: see :func:`cert_identities`."""
    return cert_identities(x509.load_pem_x509_certificate(pem))


def cert_identities(cert: x509.Certificate) -> list[str]:
    """A certificate's DNS-name SANs; its CN only when it has no DNS-name SAN (IP/email/URI SANs never count).

    The rule a node applies to a caller's certificate (`vfl.transport.tls.peer_names`).
    """
    dns: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = list(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    return certificate_names(dns, [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)])
