"""Signed lineage of a job at one party: what went in, what ran, what came out, signed with the party's own key.

At the end of every job each party writes ``lineage.json`` in its job directory:

    {"record": {...}, "signature": {"algorithm", "certificate_sha256", "value"}}

The record holds the job id and kind, this party and its role, the SHA-256 of the job spec and the code version,
the input file with its content hash and its row counts before and after PSI, the peers (their certificate
identity, the CA that vouches for them, and the fingerprint of the certificate this node saw on their connection
where it saw one), the key sizes, the defense and its epsilon, the metrics, and every artifact of the job
directory with its SHA-256 (of its content: the plaintext of a file sealed at rest, so a key rotation changes no
hash) and which of them are encrypted at rest. The signature is over the record's canonical JSON, with the node's TLS private key
(RSA-PSS/SHA-256 or ECDSA/SHA-256); an insecure node (no key) writes the record unsigned and says so.

`vfl lineage verify JOB --config node.yaml` (``verify_lineage``) checks the signature with the node's certificate
and rehashes every artifact: a changed byte in a model part (a sealed one fails its AES-GCM tag), a missing file, an
edited record, or a file that was encrypted at rest and is now stored in the clear fails with a message that names
it.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from vfl.data import sealed
from vfl.errors import SealedFileChanged, SealedFileError, VflError

LINEAGE = "lineage.json"
#: files of a job directory that lineage does not cover: itself, and temporaries of atomic writes
_NOT_ARTIFACTS = (LINEAGE,)


class LineageError(VflError):
    """A job's lineage is missing, unsigned where it must be signed, or does not match the job directory."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _artifact_paths(job_dir: Path) -> dict[str, Path]:
    """Every file under the job directory but the lineage itself and temporaries, by its name in the record."""
    out = {}
    for path in sorted(p for p in job_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(job_dir).as_posix()
        if rel in _NOT_ARTIFACTS or path.name.endswith(".tmp") or path.name.startswith(".tmp"):
            continue
        out[rel] = path
    return out


def artifacts(job_dir: Path) -> dict[str, str]:
    """Every file under the job directory (but the lineage itself and temporaries) -> the SHA-256 of its content."""
    return {rel: sealed.content_sha256(path) for rel, path in _artifact_paths(job_dir).items()}


def encrypted_artifacts(job_dir: Path) -> list[str]:
    """The artifacts stored sealed at rest (vfl/data/sealed.py)."""
    return [rel for rel, path in _artifact_paths(job_dir).items() if sealed.file_is_sealed(path)]


# ------------------------------------------------------------------------------------ signing

def _load_private_key(path: Path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    return load_pem_private_key(path.read_bytes(), password=None)


def _load_certificate(path: Path):
    from cryptography import x509
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def certificate_sha256(cert) -> str:
    from cryptography.hazmat.primitives import hashes
    return cert.fingerprint(hashes.SHA256()).hex()


def _sign(key, data: bytes) -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA-PSS-SHA256", key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
                                          hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ECDSA-SHA256", key.sign(data, ec.ECDSA(hashes.SHA256()))
    raise LineageError(f"cannot sign lineage with a {type(key).__name__} key (RSA or EC keys only)")


def _check_signature(cert, algorithm: str, signature: bytes, data: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    public = cert.public_key()
    try:
        if algorithm == "RSA-PSS-SHA256":
            public.verify(signature, data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
                          hashes.SHA256())
        elif algorithm == "ECDSA-SHA256":
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise LineageError(f"lineage signature: unknown algorithm {algorithm!r}")
    except (InvalidSignature, TypeError, ValueError):
        raise LineageError("lineage.json: the signature does not match the record (the record was edited, or it "
                           "was signed by another key than this node's certificate)") from None


def write_lineage(job_dir: Path, record: dict[str, Any], key_path: Path | None, cert_path: Path | None) -> Path:
    """Add the artifacts to `record`, sign it with the node's key (if it has one) and write lineage.json."""
    from vfl.data.atomic import atomic_write_text
    record = {**record, "artifacts": artifacts(job_dir), "encrypted_at_rest": encrypted_artifacts(job_dir)}
    signature: dict[str, Any] = {"algorithm": None, "certificate_sha256": None, "value": None}
    if key_path is not None and cert_path is not None:
        algorithm, value = _sign(_load_private_key(key_path), canonical(record))
        signature = {"algorithm": algorithm, "certificate_sha256": certificate_sha256(_load_certificate(cert_path)),
                     "value": base64.b64encode(value).decode()}
    return atomic_write_text(job_dir / LINEAGE, json.dumps({"record": record, "signature": signature}, indent=1))


def verify_lineage(job_dir: Path, cert_path: Path | None) -> dict[str, Any]:
    """The verified record; LineageError naming the first problem (signature, a changed or missing artifact)."""
    path = job_dir / LINEAGE
    if not path.exists():
        raise LineageError(f"job directory {job_dir}: no {LINEAGE} (the job did not finish here, or predates lineage)")
    try:
        document = json.loads(path.read_text())
        record, signature = document["record"], document["signature"]
    except (ValueError, KeyError, TypeError):
        raise LineageError(f"{path}: not a lineage document") from None
    if signature.get("value") is None:
        if cert_path is not None:
            raise LineageError(f"{path}: unsigned, but this node has a certificate: its lineage must be signed")
    else:
        if cert_path is None:
            raise LineageError(f"{path}: signed, but this node has no certificate to check it with (insecure node)")
        cert = _load_certificate(cert_path)
        if signature.get("certificate_sha256") != certificate_sha256(cert):
            raise LineageError(f"{path}: signed with certificate {str(signature.get('certificate_sha256'))[:16]}…, "
                               f"not this node's ({certificate_sha256(cert)[:16]}…)")
        _check_signature(cert, signature.get("algorithm"), base64.b64decode(signature["value"]), canonical(record))
    present = _artifact_paths(job_dir)
    from vfl.governance.retention import deleted_by_retention
    deleted = deleted_by_retention(job_dir)
    gone = []
    encrypted = set(record.get("encrypted_at_rest") or ())
    for name, digest in record.get("artifacts", {}).items():
        if name not in present:
            by = next((deleted[p] for p in _self_and_parents(name) if p in deleted), None)
            if by is None:
                raise LineageError(f"{job_dir}: artifact {name} is missing")
            gone.append(name)   # deleted by the retention policy, on record in retention.json and the audit log
            continue
        now = _content_hash(job_dir, name, present[name])
        if now != digest:
            raise LineageError(f"{job_dir}: artifact {name} changed since the job wrote its lineage (SHA-256 "
                               f"{now[:16]}…, recorded {digest[:16]}…)")
        if name in encrypted and not sealed.file_is_sealed(present[name]):
            raise LineageError(f"{job_dir}: artifact {name} was encrypted at rest when the job wrote its lineage "
                               "and is now stored in the clear")
    return {**record, "deleted_by_retention": gone} if gone else record


def _content_hash(job_dir: Path, name: str, path: Path) -> str:
    try:
        return sealed.content_sha256(path)
    except SealedFileChanged as exc:
        raise LineageError(f"{job_dir}: artifact {name} changed since the job wrote its lineage: {exc}") from None
    except SealedFileError as exc:
        raise LineageError(f"{job_dir}: cannot check artifact {name}: {exc}") from None


def _self_and_parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
