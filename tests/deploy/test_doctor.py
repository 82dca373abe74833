"""`vfl doctor` against real gRPC servers on loopback: mutual TLS and the health service, one failure at a time."""
from __future__ import annotations

import datetime as dt
import json
import socket
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vfl.cli.main import main
from vfl.deploy.doctor import FAIL, OK, SKIP, WARN, run_doctor, run_until_ok
from vfl.errors import ConfigError
from vfl.node.config import load_node_config
from vfl.transport.certs import create_ca, issue_party_cert

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    create_ca(root / "ca1", name="bank CA")
    create_ca(root / "ca2", name="stranger CA")
    certs = {
        "a": issue_party_cert(root / "ca1", "bank-a", root / "a"),
        "b": issue_party_cert(root / "ca1", "bank-b", root / "b"),
        "x": issue_party_cert(root / "ca2", "bank-b", root / "x"),   # right name, unknown CA
        "a-wrong": issue_party_cert(root / "ca1", "bank-z", root / "a-wrong"),
    }
    certs["b-expired"] = _expired_cert(root / "ca1", "bank-b", root / "b-expired")
    return root, certs


def _expired_cert(ca_dir: Path, identity: str, out: Path):
    """A certificate that expired yesterday (issue_party_cert cannot make one)."""
    now = dt.datetime.now(dt.timezone.utc)
    return _cert_with_names(ca_dir, out, identity, [x509.DNSName(identity)],
                            valid=(now - dt.timedelta(days=30), now - dt.timedelta(days=1)))


@pytest.fixture
def servers():
    """Start gRPC servers with the standard health service; stopped after the test."""
    started = []

    def start(cert=None, client_ca: Path | None = None, status=SERVING, plaintext=False, with_health=True) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        if with_health:
            servicer = health.HealthServicer()
            servicer.set("", status)
            servicer.set("vfl.Node", status)
            health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        if plaintext:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            creds = grpc.ssl_server_credentials([(cert.key.read_bytes(), cert.cert.read_bytes())],
                                                root_certificates=client_ca.read_bytes(), require_client_auth=True)
            port = server.add_secure_port("127.0.0.1:0", creds)
        server.start()
        started.append(server)
        return port

    yield start
    for s in started:
        s.stop(0)


def node_config(tmp_path: Path, pki, peers: list[dict], own: str = "a"):
    root, certs = pki
    cert = certs[own]
    data = {"party": "bank-a", "role": "active", "listen": "127.0.0.1:1",
            "tls": {"cert": str(cert.cert), "key": str(cert.key), "ca": str(root / "ca1" / "ca.crt")},
            "peers": peers}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peer_target(report, name="bank-b"):
    [target] = [t for t in report.targets if t.name == name and t.kind == "peer"]
    return target


def statuses(target) -> dict[str, str]:
    return {c.check: c.status for c in target.checks}


def message(target, check: str) -> str:
    return next(c.message for c in target.checks if c.check == check)


def test_all_checks_pass(tmp_path, pki, servers):
    root, certs = pki
    port = servers(certs["b"], root / "ca1" / "ca.crt")
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}", "identity": "bank-b"}])))
    assert report.ok, report.to_json()
    assert statuses(peer_target(report)) == {"dns": OK, "tcp": OK, "tls": OK, "health": OK}
    assert [c.status for c in report.targets[0].checks] == [OK]  # our own certificate


def test_dns_failure_names_the_address_key(tmp_path, pki):
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": "vfl.bank-b.nonexistent.invalid:443", "identity": "bank-b"}])))
    target = peer_target(report)
    assert not report.ok
    assert statuses(target) == {"dns": FAIL, "tcp": SKIP, "tls": SKIP, "health": SKIP}
    assert "cannot resolve 'vfl.bank-b.nonexistent.invalid'" in message(target, "dns")
    assert "peers[0].address" in message(target, "dns")


def test_tcp_refused(tmp_path, pki):
    port = closed_port()
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}"}])))
    target = peer_target(report)
    assert statuses(target) == {"dns": OK, "tcp": FAIL, "tls": SKIP, "health": SKIP}
    assert "connection refused" in message(target, "tcp") and f"port {port}" in message(target, "tcp")


def test_wrong_identity(tmp_path, pki, servers):
    root, certs = pki
    port = servers(certs["b"], root / "ca1" / "ca.crt")
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}", "identity": "bank-c"}])))
    target = peer_target(report)
    assert statuses(target) == {"dns": OK, "tcp": OK, "tls": FAIL, "health": SKIP}
    text = message(target, "tls")
    assert "expected identity 'bank-c'" in text and "'bank-b'" in text and "peers[0].identity" in text


def test_unknown_ca(tmp_path, pki, servers):
    root, certs = pki
    port = servers(certs["x"], root / "ca1" / "ca.crt")
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}"}])))
    text = message(peer_target(report), "tls")
    assert "CA we do not trust" in text and "stranger CA" in text and "CA bundle" in text


def test_our_client_certificate_rejected(tmp_path, pki, servers):
    root, certs = pki
    port = servers(certs["b"], root / "ca2" / "ca.crt")  # the peer trusts only another CA for clients
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}"}])))
    target = peer_target(report)
    assert statuses(target)["tls"] == FAIL
    text = message(target, "tls")
    assert "bank-b rejected our client certificate" in text and "bank CA" in text


def test_expired_peer_certificate(tmp_path, pki, servers):
    root, certs = pki
    port = servers(certs["b-expired"], root / "ca1" / "ca.crt")
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}"}])))
    text = message(peer_target(report), "tls")
    assert "certificate expired on" in text and "renew" in text


def test_health_not_serving(tmp_path, pki, servers):
    root, certs = pki
    port = servers(certs["b"], root / "ca1" / "ca.crt", status=NOT_SERVING)
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}"}])))
    target = peer_target(report)
    assert statuses(target) == {"dns": OK, "tcp": OK, "tls": OK, "health": FAIL}
    assert "NOT_SERVING" in message(target, "health")


def test_no_health_service(tmp_path, pki, servers):
    root, certs = pki
    port = servers(certs["b"], root / "ca1" / "ca.crt", with_health=False)
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}"}])))
    assert "not a vfl node" in message(peer_target(report), "health")


def test_plaintext_port(tmp_path, pki, servers):
    port = servers(plaintext=True)  # e.g. the plaintext health port given as a peer address
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port}"}])))
    target = peer_target(report)
    assert statuses(target)["tls"] == FAIL
    assert "does not speak TLS" in message(target, "tls")


def test_own_certificate_with_wrong_identity(tmp_path, pki):
    report = run_doctor(load_node_config(node_config(tmp_path, pki, [], own="a-wrong")))
    [local] = report.targets
    assert local.kind == "local" and not report.ok
    assert "this node's identity is 'bank-a'" in local.checks[0].message


def test_peer_selection_and_self(tmp_path, pki, servers):
    root, certs = pki
    port_b = servers(certs["b"], root / "ca1" / "ca.crt")
    port_a = servers(certs["a"], root / "ca1" / "ca.crt")  # "this node"
    config = load_node_config(node_config(tmp_path, pki, [
        {"name": "bank-b", "address": f"127.0.0.1:{port_b}"},
        {"name": "bank-c", "address": f"127.0.0.1:{closed_port()}"}]))
    assert not run_doctor(config).ok                                   # bank-c is down
    assert run_doctor(config, peers=["bank-b"]).ok
    only_self = run_doctor(config, check_self=True, address=f"127.0.0.1:{port_a}")
    assert only_self.ok and [t.kind for t in only_self.targets] == ["local", "self"]
    with pytest.raises(ConfigError, match="no peer named 'bank-x'"):
        run_doctor(config, peers=["bank-x"])


def test_wait_retries_until_ok():
    calls = []

    class R:
        def __init__(self, ok):
            self.ok = ok

    def run():
        calls.append(1)
        return R(len(calls) >= 3)

    assert run_until_ok(run, wait=30, interval=0.01).ok and len(calls) == 3
    calls.clear()
    assert not run_until_ok(lambda: R(False), wait=0.05, interval=0.01).ok


def test_cli_json_and_exit_codes(tmp_path, pki, servers, capsys):
    root, certs = pki
    port = servers(certs["b"], root / "ca1" / "ca.crt")
    good = node_config(tmp_path, pki, [{"name": "bank-b", "address": f"127.0.0.1:{port}"}])
    assert main(["doctor", "--config", str(good), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["targets"][1]["name"] == "bank-b"
    assert {c["check"]: c["status"] for c in out["targets"][1]["checks"]}["health"] == "ok"

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = node_config(bad_dir, pki, [{"name": "bank-b", "address": f"127.0.0.1:{closed_port()}"}])
    assert main(["doctor", "--config", str(bad)]) == 1
    text = capsys.readouterr().out
    assert "[FAIL] tcp" in text and "failed: bank-b" in text
    assert WARN not in [c["status"] for c in out["targets"][0]["checks"]]


def _cert_with_names(ca_dir: Path, out: Path, common_name: str, sans: list[x509.GeneralName],
                     valid: tuple[dt.datetime, dt.datetime] | None = None):
    """A certificate with the given CN and SANs (issue_party_cert always adds the identity as a DNS SAN),
    valid from 5 minutes ago for 90 days unless `valid` gives (not_before, not_after)."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    not_before, not_after = valid or (now - dt.timedelta(minutes=5), now + dt.timedelta(days=90))
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out.mkdir(parents=True, exist_ok=True)
    (out / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return type("Cert", (), {"cert": out / "tls.crt", "key": out / "tls.key", "pem": (out / "tls.crt").read_bytes()})


def test_certificate_names_follow_the_node_rule(tmp_path, pki):
    """DNS SANs only; the CN only without DNS SANs (IP/email/URI SANs neither count nor hide the CN)."""
    import ipaddress

    from vfl.deploy.doctor import _cert_names
    from vfl.transport.certs import certificate_identities
    root, _ = pki
    ip = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    cases = {
        "dns": ([x509.DNSName("bank-z"), ip], ["bank-z"]),                      # CN bank-a hidden by a DNS SAN
        "ip": ([ip, x509.RFC822Name("ops@bank-a.example"),
                x509.UniformResourceIdentifier("spiffe://bank/x")], ["bank-a"]),  # non-DNS SANs: CN counts
        "none": ([], ["bank-a"]),
    }
    for name, (sans, expected) in cases.items():
        cert = _cert_with_names(root / "ca1", tmp_path / name, "bank-a", sans)
        assert certificate_identities(cert.pem) == expected, name
        assert _cert_names(x509.load_pem_x509_certificate(cert.pem)) == expected, name


def test_own_certificate_whose_cn_is_hidden_by_a_dns_san(tmp_path, pki):
    import ipaddress
    root, certs = pki
    hidden = _cert_with_names(root / "ca1", tmp_path / "hidden", "bank-a", [x509.DNSName("bank-z")])
    report = run_doctor(load_node_config(node_config(tmp_path, (root, {**certs, "own": hidden}), [], own="own")))
    [local] = report.targets
    assert not report.ok and "this node's identity is 'bank-a'" in local.checks[0].message
    ip_only = _cert_with_names(root / "ca1", tmp_path / "ip-only", "bank-a",
                               [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    report = run_doctor(load_node_config(node_config(tmp_path, (root, {**certs, "own": ip_only}), [], own="own")))
    assert report.ok, report.to_json()
