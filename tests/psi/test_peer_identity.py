"""Which names of a caller's TLS certificate PSI treats as its identities (the same rule as the vfl node)."""
from __future__ import annotations

from types import SimpleNamespace

from psi.identity import certificate_names, is_dns_name
from psi.transport.server import peer_info


def context(sans: list[bytes], cns: list[bytes]) -> SimpleNamespace:
    auth = {}
    if sans:
        auth["x509_subject_alternative_name"] = sans
    if cns:
        auth["x509_common_name"] = cns
    return SimpleNamespace(auth_context=lambda: auth, peer=lambda: "ipv4:127.0.0.1:1")


def test_dns_sans_hide_the_common_name():
    peer = peer_info(context([b"mallory"], [b"bank-b"]))
    assert peer.names == ("mallory",) and "bank-b" not in peer


def test_common_name_counts_without_dns_sans():
    assert peer_info(context([], [b"bank-b"])).names == ("bank-b",)
    # IP, email and URI SANs (our own certificates carry 127.0.0.1) neither count nor hide the CN
    peer = peer_info(context([b"127.0.0.1", b"2001:db8::7", b"ops@bank.example", b"spiffe://bank/b"], [b"bank-b"]))
    assert peer.names == ("bank-b",)
    assert peer_info(context([b"127.0.0.1", b"bank-b", b"bank-b"], [b"x"])).names == ("bank-b",)
    assert not peer_info(context([], [])).authenticated


def test_dns_name_test():
    assert is_dns_name("bank-b") and is_dns_name("vfl.bank-b.example.com")
    assert not any(is_dns_name(v) for v in ("127.0.0.1", "::1", "a@b", "spiffe://x/y"))
    assert certificate_names(["10.0.0.1"], ["cn"]) == ["cn"]
