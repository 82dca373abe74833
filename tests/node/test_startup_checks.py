"""`vfl serve` refuses broken set-ups at start, with one clear line (issue 15, item 11).

Before: a node started on a port another node held (gRPC sets SO_REUSEPORT, so both bound and the kernel split
the connections), with its own certificate from another CA or for another identity (every peer then refused it),
or with a jobs_dir that was a file (every job failed later); and `insecure: true` started without a word. Each
check is a `Node.start` (what `vfl serve` runs); three tests run the real `vfl serve` for its exit status and its
one-line error, and the insecure warning on the terminal.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vfl.api import free_port
from vfl.transport.certs import create_ca, issue_party_cert
from vfl.transport.tls import chains_to

REPO = Path(__file__).resolve().parents[2]


def node_config(home: Path, port: int, **extra) -> Path:
    config = {"party": "bank-a", "role": "active", "listen": f"127.0.0.1:{port}",
              "peers": [{"name": "bank-b", "address": "127.0.0.1:1"}], "jobs_dir": str(home / "jobs"), **extra}
    if "tls" not in extra:
        config["insecure"] = True
    home.mkdir(parents=True, exist_ok=True)
    path = home / "node.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def serve(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "vfl.cli.main", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def refused(config: Path) -> str:
    """The one error line of a `vfl serve` that must refuse to start (exit status 1, a runtime failure under the
    CLI's 0/1/2 convention; no traceback)."""
    proc = serve(config)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("vfl serve started (it ran for 60 s) instead of refusing its set-up")
    assert proc.returncode == 1, (proc.returncode, out, err)
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error: ")][-1]


def refused_in_process(config_path: Path) -> str:
    """The ConfigError a node raises on start (the same code `vfl serve` runs, without a process to start)."""
    from vfl.errors import ConfigError
    from vfl.node.config import load_node_config
    from vfl.node.server import Node
    node = None
    with pytest.raises(ConfigError) as info:
        node = Node(load_node_config(config_path))
        node.start()
    if node is not None:
        node.stop(0)
    return str(info.value)


def wait_listening(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line:
            return
        if proc.poll() is not None:
            pytest.fail(f"vfl serve exited: {proc.stderr.read()}")
    pytest.fail("vfl serve did not start")


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def test_a_port_held_by_another_node_is_refused(tmp_path):
    """The silent case: the first node is a gRPC server too, so with SO_REUSEPORT both would bind."""
    from vfl.node.config import load_node_config
    from vfl.node.server import Node
    port = free_port()
    first = Node(load_node_config(node_config(tmp_path / "first", port)))
    first.start()
    try:
        line = refused(node_config(tmp_path / "second", port))
    finally:
        first.stop(0)
    assert line.startswith(f"error: listen: cannot listen on 127.0.0.1:{port}: the port is in use"), line


def test_a_port_held_by_any_process_is_refused(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        message = refused_in_process(node_config(tmp_path, held.getsockname()[1]))
    assert message.startswith("listen: cannot listen on") and "in use" in message, message


def test_the_health_port_is_checked_too(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        message = refused_in_process(node_config(tmp_path, free_port(), health_listen=f"127.0.0.1:{port}"))
    assert message.startswith(f"health_listen: cannot listen on 127.0.0.1:{port}"), message


def tls_config(tmp_path: Path, identity: str, ca_dir: Path, trusted_ca: Path) -> Path:
    certs = issue_party_cert(ca_dir, identity, tmp_path / "tls")
    return node_config(tmp_path, free_port(), tls={"cert": str(certs.cert), "key": str(certs.key),
                                                  "ca": str(trusted_ca)})


def test_a_certificate_from_another_ca_is_refused(tmp_path):
    create_ca(tmp_path / "ca-configured", name="configured CA")
    create_ca(tmp_path / "ca-other", name="other CA")
    line = refused(tls_config(tmp_path, "bank-a", tmp_path / "ca-other", tmp_path / "ca-configured" / "ca.crt"))
    assert line.startswith("error: tls.cert:") and "CN=other CA" in line and "does not chain" in line, line
    assert "CN=configured CA" in line, line


def test_a_certificate_for_another_identity_is_refused(tmp_path):
    create_ca(tmp_path / "ca")
    message = refused_in_process(tls_config(tmp_path, "bank-x", tmp_path / "ca", tmp_path / "ca" / "ca.crt"))
    assert message.startswith("tls.cert:") and "['bank-x']" in message and "identity 'bank-a'" in message, message


def test_a_good_certificate_starts(tmp_path):
    """A guard for the two checks above: the project's own dev certificates pass them."""
    from vfl.node.config import load_node_config
    from vfl.node.server import Node
    create_ca(tmp_path / "ca")
    node = Node(load_node_config(tls_config(tmp_path, "bank-a", tmp_path / "ca", tmp_path / "ca" / "ca.crt")))
    node.start()
    node.stop(0)


def test_a_jobs_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "jobs-file").write_text("not a directory")
    message = refused_in_process(node_config(tmp_path, free_port(), jobs_dir=str(tmp_path / "jobs-file")))
    assert message == f"jobs_dir: {tmp_path / 'jobs-file'} is a file, not a directory", message
    assert (tmp_path / "jobs-file").read_text() == "not a directory"


def test_a_jobs_dir_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("")
    message = refused_in_process(node_config(tmp_path, free_port(), jobs_dir=str(tmp_path / "a-file" / "jobs")))
    assert message == f"jobs_dir: cannot write in {tmp_path / 'a-file' / 'jobs'}: Not a directory", message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only directory all the same")
def test_a_read_only_jobs_dir_is_refused(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    jobs.chmod(0o500)
    try:
        message = refused_in_process(node_config(tmp_path, free_port(), jobs_dir=str(jobs)))
    finally:
        jobs.chmod(0o700)
    assert message == f"jobs_dir: cannot write in {jobs}: Permission denied", message


def test_insecure_mode_warns_on_the_terminal_and_in_the_log(tmp_path):
    proc = serve(node_config(tmp_path, free_port()))
    try:
        wait_listening(proc)
    finally:
        err = stop(proc)
    assert "WARNING: this node runs with 'insecure: true'" in err, err
    assert "WARNING vfl.node: INSECURE: node bank-a runs without TLS" in err, err


def test_every_refused_identity_is_logged(caplog):
    """Before: only a certificate matching several identities was logged; a stranger's was not."""
    from types import SimpleNamespace

    from vfl.errors import PermissionDenied
    from vfl.node.server import Node
    config = SimpleNamespace(party="host", identity="host", roles={},
                             peers=(SimpleNamespace(name="guest", identity="guest"),))
    node = SimpleNamespace(config=config)
    with caplog.at_level(logging.WARNING, logger="vfl.node"):
        for names in (["mallory"], []):
            with pytest.raises(PermissionDenied):
                Node.identify(node, names)
    logged = [r.getMessage() for r in caplog.records]
    assert "refused a caller: certificate identities ['mallory'] match no configured peer or role" in logged
    assert "refused a caller: certificate identities [] match no configured peer or role" in logged


# ------------------------------------------------------------------------------------------ chains

def _cert(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def test_a_certificate_may_chain_through_intermediates_in_its_file():
    """Production PKIs issue from an intermediate; the node's cert file then holds leaf + intermediate."""
    root_key, mid_key, leaf_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = _cert("root", root_key, "root", root_key, True)
    mid = _cert("intermediate", mid_key, "root", root_key, True)
    leaf = _cert("bank-a", leaf_key, "intermediate", mid_key, False)
    other_root = _cert("root", other_key, "root", other_key, True)   # same name, another key
    assert chains_to(leaf, [mid], [root])
    assert not chains_to(leaf, [], [root])              # the intermediate is missing
    assert not chains_to(leaf, [mid], [other_root])      # a look-alike root does not sign it
    assert chains_to(mid, [], [root]) and chains_to(root, [], [root])
