"""Signed lineage: a changed byte in any artifact, a missing file, an edited record or another key all fail."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from vfl.governance.lineage import LINEAGE, LineageError, verify_lineage, write_lineage


def key_and_cert(tmp_path, name: str, kind: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" \
        else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_path, cert_path = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture(params=["rsa", "ec"])
def job(tmp_path, request):
    job_dir = tmp_path / "jobs" / "j1"
    (job_dir / "model").mkdir(parents=True)
    (job_dir / "model" / "party.pt").write_bytes(b"\x00weights" * 100)
    (job_dir / "result.json").write_text('{"test": {"auc": 0.9}}')
    key, cert = key_and_cert(tmp_path, "bank-a", request.param)
    write_lineage(job_dir, {"job_id": "j1", "metrics": {"auc": 0.9}}, key, cert)
    return job_dir, cert


def test_intact_lineage_verifies(job):
    job_dir, cert = job
    record = verify_lineage(job_dir, cert)
    assert set(record["artifacts"]) == {"model/party.pt", "result.json"}


def test_one_changed_byte_in_a_model_part_is_named(job):
    job_dir, cert = job
    data = bytearray((job_dir / "model" / "party.pt").read_bytes())
    data[5] ^= 1
    (job_dir / "model" / "party.pt").write_bytes(bytes(data))
    with pytest.raises(LineageError, match=r"artifact model/party\.pt changed"):
        verify_lineage(job_dir, cert)


def test_a_missing_artifact_is_named(job):
    job_dir, cert = job
    (job_dir / "result.json").unlink()
    with pytest.raises(LineageError, match="artifact result.json is missing"):
        verify_lineage(job_dir, cert)


def test_an_edited_record_fails_its_signature(job):
    job_dir, cert = job
    document = json.loads((job_dir / LINEAGE).read_text())
    document["record"]["metrics"]["auc"] = 0.99
    (job_dir / LINEAGE).write_text(json.dumps(document))
    with pytest.raises(LineageError, match="signature does not match"):
        verify_lineage(job_dir, cert)


def test_another_nodes_certificate_or_an_unsigned_record_fails(job, tmp_path):
    job_dir, _ = job
    _, other = key_and_cert(tmp_path, "bank-z", "ec")
    with pytest.raises(LineageError, match="not this node's"):
        verify_lineage(job_dir, other)
    write_lineage(job_dir, {"job_id": "j1"}, None, None)   # as an insecure node writes it
    assert verify_lineage(job_dir, None)["job_id"] == "j1"
    with pytest.raises(LineageError, match="unsigned, but this node has a certificate"):
        verify_lineage(job_dir, other)
