"""`vfl certs`: an existing CA is never replaced without --force, and identities must be valid DNS names."""
from __future__ import annotations

import pytest
from cryptography import x509

from vfl.cli.main import main
from vfl.errors import ConfigError
from vfl.transport.certs import cert_identities, check_dns_name, create_ca, issue_party_cert


def test_an_existing_ca_is_kept_without_force(tmp_path, capsys):
    ca = tmp_path / "ca"
    assert main(["certs", "ca", "--out", str(ca)]) == 0
    key, crt = (ca / "ca.key").read_bytes(), (ca / "ca.crt").read_bytes()
    capsys.readouterr()
    assert main(["certs", "ca", "--out", str(ca)]) == 1
    err = capsys.readouterr().err
    assert "already holds a CA" in err and "--force" in err
    assert (ca / "ca.key").read_bytes() == key and (ca / "ca.crt").read_bytes() == crt
    assert main(["certs", "ca", "--out", str(ca), "--force"]) == 0
    assert (ca / "ca.key").read_bytes() != key


def test_a_lone_ca_key_counts_as_an_existing_ca(tmp_path):
    (tmp_path / "ca.key").write_text("a key someone keeps here")
    with pytest.raises(ConfigError, match="ca.key"):
        create_ca(tmp_path)
    assert (tmp_path / "ca.key").read_text() == "a key someone keeps here"


@pytest.mark.parametrize("name", ["bank a", "bank_a", "-bank", "bank-", "*.bank.example", "bank..a", "",
                                  "a" * 64, ".".join(["a" * 60] * 5), "bänk"])
def test_invalid_dns_names_are_refused(tmp_path, name, capsys):
    create_ca(tmp_path / "ca")
    with pytest.raises(ConfigError, match="not a valid DNS name"):
        issue_party_cert(tmp_path / "ca", name, tmp_path / "out")
    assert main(["certs", "issue", "--ca", str(tmp_path / "ca"), f"--identity={name}", "--out",
                 str(tmp_path / "cli")]) == 2
    assert "not a valid DNS name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cli").exists()


def test_extra_names_and_addresses_are_checked_too(tmp_path):
    create_ca(tmp_path / "ca")
    with pytest.raises(ConfigError, match="not a valid DNS name"):
        issue_party_cert(tmp_path / "ca", "bank-a", tmp_path / "out", extra_dns=("svc name",))
    with pytest.raises(ConfigError, match="not a valid IPv4 or IPv6"):
        issue_party_cert(tmp_path / "ca", "bank-a", tmp_path / "out", ips=("10.0.0.300",))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["bank-a", "b", "vfl.bank-b.example.com", "Bank-A", "a" * 63, "10-0-0-1"])
def test_valid_dns_names_are_issued(tmp_path, name):
    create_ca(tmp_path / "ca")
    issued = issue_party_cert(tmp_path / "ca", name, tmp_path / "out", extra_dns=("bank-a-vfl.vfl.svc",))
    cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    assert cert_identities(cert)[0] == name
    assert check_dns_name(name, "identity") == name
