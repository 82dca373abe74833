"""`vfl doctor`: can this node reach its peers, and do they accept it?

For each peer of a node config, layer by layer, stopping at the first layer that fails:

1. ``dns``     getaddrinfo of the peer's address;
2. ``tcp``     a TCP connection to one of the resolved addresses;
3. ``tls``     a TLS handshake presenting this node's client certificate, verifying the peer's chain against our
               CA bundle and its name against the peer entry's ``identity`` (SNI is the identity too, as gRPC sends
               it), then an HTTP/2 preface to learn whether the peer accepted our certificate;
4. ``health``  ``grpc.health.v1.Health/Check`` for ``vfl.Node`` over mutual TLS, exactly as the node dials peers.

A ``local`` target checks this node's own certificate first (readable, not expired, carries our identity, issued by
a CA in our own bundle). ``self_address`` checks this node itself the same way as a peer, as the training Job does
before it submits. Every failure message says what is wrong and what to change.
"""
from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from vfl.errors import VflError
from vfl.node.config import NodeConfig, PeerConfig
from vfl.transport.certs import cert_identities

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
HEALTH_SERVICE = "vfl.Node"
EXPIRY_WARNING_DAYS = 14

# OpenSSL verify codes (x509_vfy.h) behind ssl.SSLCertVerificationError.verify_code
_X509_NOT_YET_VALID = 9
_X509_EXPIRED = 10
_X509_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}  # no issuer cert / self-signed leaf / self-signed in chain / no local issuer
_X509_HOSTNAME_MISMATCH = 62
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


@dataclass
class Check:
    check: str      # local | dns | tcp | tls | health
    status: str     # ok | warn | fail | skip
    message: str

    def to_dict(self) -> dict:
        return {"check": self.check, "status": self.status, "message": self.message}


@dataclass
class Target:
    name: str
    kind: str                    # local | peer | self
    address: str | None = None
    identity: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status in (OK, WARN, SKIP) for c in self.checks)

    def add(self, check: str, status: str, message: str) -> Check:
        c = Check(check, status, message)
        self.checks.append(c)
        return c

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "address": self.address, "identity": self.identity,
                "ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


@dataclass
class Report:
    party: str
    config: str | None
    targets: list[Target]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_dict(self) -> dict:
        return {"party": self.party, "config": self.config, "ok": self.ok,
                "targets": [t.to_dict() for t in self.targets]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


# ---------------------------------------------------------------------------------------------- helpers

def split_address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _describe_cert(cert: x509.Certificate) -> str:
    names = _cert_names(cert)
    issuer = cert.issuer.rfc4514_string() or "(empty issuer)"
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    fp = ":".join(digest[i:i + 2] for i in range(0, 16, 2))  # as `openssl x509 -fingerprint -sha256` prints it
    return f"names {names}, issued by '{issuer}', SHA-256 fingerprint {fp}:..."


#: the identities peers see in a certificate: DNS SANs, or the CN when there are none (as a node checks them)
_cert_names = cert_identities


def _date(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _issued_by_any(cert: x509.Certificate, cas: Iterable[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except Exception:  # noqa: BLE001 - wrong issuer, bad signature or unsupported key: not this CA
            continue
    return False


# ---------------------------------------------------------------------------------------------- local

def check_local(config: NodeConfig, target: Target) -> None:
    """This node's own certificate: if it is unusable, every peer check below would fail for the same reason."""
    if config.insecure or config.tls is None:
        target.add("local", WARN, "the node config sets 'insecure: true' (no TLS): for tests only, never between "
                                  "organizations")
        return
    from vfl.transport.tls import load_tls_files
    paths = config.tls
    try:
        cert_pem, _key, ca_pem = load_tls_files(paths.cert, paths.key, paths.ca)
    except VflError as exc:
        target.add("local", FAIL, f"{exc}. Fix the TLS secret mounted at {Path(paths.cert).parent} / "
                                  f"{Path(paths.ca).parent} (see docs/deploy.md, certificates)")
        return
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = _cert_names(cert)
    if config.identity not in names:
        target.add("local", FAIL, f"our certificate {paths.cert} carries {names} but this node's identity is "
                                  f"{config.identity!r}: peers expect that name and will refuse our calls. Issue "
                                  f"the certificate for {config.identity!r} (or set 'identity' in the node config)")
        return
    cas = x509.load_pem_x509_certificates(ca_pem)
    if not _issued_by_any(cert, cas):
        target.add("local", WARN, f"our certificate is issued by '{cert.issuer.rfc4514_string()}', which is not in "
                                  f"our CA bundle {paths.ca}: this node will refuse its own identity, so `vfl run` "
                                  "with this config (the Kubernetes Job) fails. Add our CA certificate to the bundle")
        return
    left = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    if left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        target.add("local", WARN, f"our certificate expires on {_date(cert.not_valid_after_utc)} "
                                  f"({left.days} days left): renew it and restart the node")
        return
    target.add("local", OK, f"certificate for {config.identity!r} valid until {_date(cert.not_valid_after_utc)}, "
                            f"issued by '{cert.issuer.rfc4514_string()}' (in our CA bundle)")


# ---------------------------------------------------------------------------------------------- network layers

def check_dns(target: Target, host: str, port: int, where: str) -> list[tuple] | None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            why = "no such name"
        else:
            why = exc.strerror or str(exc)
        target.add("dns", FAIL, f"cannot resolve {host!r} ({why}). Check {where} for a typo; from inside the "
                                f"cluster the name must resolve through the cluster DNS (try `getent hosts {host}` "
                                "in the pod); for a peer in another cluster use its public DNS name, not a "
                                "*.svc.cluster.local name")
        return None
    addrs = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if (family, sockaddr) not in addrs:
            addrs.append((family, sockaddr))
    target.add("dns", OK, f"{host} -> {', '.join(str(a[1][0]) for a in addrs)}")
    return addrs


def check_tcp(target: Target, addrs: list[tuple], port: int, timeout: float) -> tuple | None:
    errors = []
    for family, sockaddr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
            target.add("tcp", OK, f"connected to {sockaddr[0]}:{port}")
            return family, sockaddr
        except socket.timeout:
            errors.append((sockaddr, "timeout"))
        except OSError as exc:
            errors.append((sockaddr, exc.errno))
        finally:
            sock.close()
    where = ", ".join(f"{s[0]}:{port}" for s, _ in errors)
    kinds = {e for _, e in errors}
    if kinds == {errno.ECONNREFUSED}:
        msg = (f"connection refused at {where}: the host is reachable but nothing listens on port {port}. Check the "
               "port in the peer's address, that its node is running, and that its Service/LoadBalancer forwards "
               "this port to the pod's gRPC port")
    elif "timeout" in kinds:
        msg = (f"no answer from {where} within {timeout:g} s: packets are dropped on the way. Check firewalls, the "
               "peer's NetworkPolicy / loadBalancerSourceRanges (they must allow our egress address), and our own "
               "egress rules")
    else:
        msg = f"cannot connect to {where}: " + ", ".join(
            f"{s[0]}: {e if isinstance(e, str) else (errno.errorcode.get(e, e))}" for s, e in errors) + \
            ". Check routing between the clusters (EHOSTUNREACH / ENETUNREACH mean no route)"
    target.add("tcp", FAIL, msg)
    return None


def _client_context(config: NodeConfig, verify: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        ctx.load_verify_locations(cafile=str(config.tls.ca))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(config.tls.cert), str(config.tls.key))
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _peer_certificate(config: NodeConfig, family: int, sockaddr: tuple, identity: str,
                      timeout: float) -> x509.Certificate | None:
    """The peer's certificate without verifying it, to explain why verification failed."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as raw:
            raw.settimeout(timeout)
            raw.connect(sockaddr)
            with _client_context(config, verify=False).wrap_socket(raw, server_hostname=identity) as tls_sock:
                der = tls_sock.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der) if der else None
    except (OSError, ValueError):
        return None


def check_tls(target: Target, config: NodeConfig, peer_name: str, family: int, sockaddr: tuple, identity: str,
              where: str, timeout: float) -> bool:
    if config.insecure or config.tls is None:
        target.add("tls", SKIP, "insecure mode: no TLS")
        return True
    ctx = _client_context(config, verify=True)
    raw = socket.socket(family, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        raw.connect(sockaddr)
        tls_sock = ctx.wrap_socket(raw, server_hostname=identity)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        cert = _peer_certificate(config, family, sockaddr, identity, timeout)
        shown = f"({_describe_cert(cert)})" if cert is not None else "(could not read it)"
        code = exc.verify_code
        if code in _X509_UNKNOWN_ISSUER:
            msg = (f"{peer_name}'s certificate is signed by a CA we do not trust {shown}. Add {peer_name}'s CA "
                   f"certificate to our CA bundle ({config.tls.ca}, the CA secret) and restart the node. If a "
                   "load balancer or ingress presents this certificate, it terminates TLS: configure TLS passthrough")
        elif code == _X509_HOSTNAME_MISMATCH:
            msg = (f"{peer_name}'s certificate does not carry the expected identity {identity!r} {shown}. Either "
                   f"set {where}.identity to one of those names, or ask {peer_name} to issue its certificate for "
                   f"{identity!r}")
        elif code == _X509_EXPIRED:
            when = f" on {_date(cert.not_valid_after_utc)}" if cert is not None else ""
            msg = (f"{peer_name}'s certificate expired{when} {shown}. {peer_name} must renew it and restart its "
                   "node (with cert-manager: check the Certificate's status)")
        elif code == _X509_NOT_YET_VALID:
            msg = (f"{peer_name}'s certificate is not valid yet {shown}. Check the clocks of both sides (NTP)")
        else:
            msg = f"{peer_name}'s certificate was refused: {exc.verify_message} (OpenSSL code {code}) {shown}"
        target.add("tls", FAIL, msg)
        return False
    except ssl.SSLError as exc:
        raw.close()
        target.add("tls", FAIL, _handshake_error(exc, peer_name, sockaddr))
        return False
    except (socket.timeout, ConnectionError, OSError) as exc:
        raw.close()
        target.add("tls", FAIL, f"the connection to {sockaddr[0]} closed during the TLS handshake ({exc}): "
                                "whatever listens there is not a TLS server, or it dropped us. Check the port")
        return False
    version = tls_sock.version() or "TLS"
    try:
        # TLS 1.3 servers check our certificate after the client considers the handshake complete: send the HTTP/2
        # preface and read. A gRPC server answers with SETTINGS; a server refusing our certificate closes instead.
        tls_sock.settimeout(timeout)
        tls_sock.sendall(_H2_PREFACE)
        data = tls_sock.recv(64)
        if not data:
            raise ConnectionResetError("closed")
    except ssl.SSLError as exc:
        target.add("tls", FAIL, _rejected(config, peer_name, f"TLS alert {exc.reason or exc}"))
        return False
    except socket.timeout:
        target.add("tls", FAIL, f"{peer_name} completed the TLS handshake but sent nothing within {timeout:g} s: "
                                "it is not a gRPC server (wrong port or a proxy that does not speak HTTP/2)")
        return False
    except (ConnectionError, OSError):
        target.add("tls", FAIL, _rejected(config, peer_name, "connection closed after the handshake"))
        return False
    finally:
        tls_sock.close()
    target.add("tls", OK, f"mutual TLS with {identity!r} ({version}); {peer_name} accepted our certificate")
    return True


def _handshake_error(exc: ssl.SSLError, peer_name: str, sockaddr: tuple) -> str:
    reason = (exc.reason or str(exc)).upper()
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH_TOO_LONG" in reason \
            or "HTTP_REQUEST" in reason or "UNEXPECTED_EOF" in reason:
        return (f"{sockaddr[0]}:{sockaddr[1]} does not speak TLS ({exc.reason}): wrong port (the plaintext health "
                "port?) or a plaintext proxy in front of the node. Peers must reach the node's mutual-TLS gRPC port")
    if "ALERT" in reason:
        return _rejected_text(peer_name, f"TLS alert {exc.reason}")
    return f"TLS handshake with {peer_name} failed: {exc.reason or exc}"


def _rejected_text(peer_name: str, how: str) -> str:
    return (f"{peer_name} rejected our client certificate ({how}). {peer_name} must trust the CA that issued our "
            f"certificate (add our CA certificate to their CA bundle secret) and our certificate must be valid")


def _rejected(config: NodeConfig, peer_name: str, how: str) -> str:
    detail = ""
    try:
        ours = x509.load_pem_x509_certificate(Path(config.tls.cert).read_bytes())
        detail = f" Our certificate: {_describe_cert(ours)}, valid until {_date(ours.not_valid_after_utc)}."
    except (OSError, ValueError):
        pass
    return _rejected_text(peer_name, how) + "." + detail


def check_health(target: Target, config: NodeConfig, address: str, identity: str, peer_name: str,
                 timeout: float) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from vfl.transport import tls
    creds = None
    if not config.insecure and config.tls is not None:
        creds = tls.channel_credentials(config.tls.cert, config.tls.key, config.tls.ca)
    channel = tls.open_channel(address, creds, identity)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        if code == grpc.StatusCode.UNIMPLEMENTED:
            msg = (f"{address} speaks gRPC but has no health service: it is not a vfl node (wrong address or port?)")
        elif code == grpc.StatusCode.NOT_FOUND:
            msg = (f"{address} has a health service but does not know {HEALTH_SERVICE!r}: it is not a vfl node")
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            msg = f"{peer_name} did not answer the health check within {timeout:g} s: the node is overloaded or hung"
        else:
            msg = f"health check failed with {code.name if code else 'an error'}: {detail}"
        target.add("health", FAIL, msg)
        return False
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        target.add("health", FAIL, f"{peer_name} is reachable but reports {status} for {HEALTH_SERVICE!r}: its node is "
                                   "starting, shutting down or unhealthy. Ask its operator to check the pod's logs "
                                   "(kubectl logs deploy/...) and events")
        return False
    target.add("health", OK, f"{HEALTH_SERVICE} is SERVING over mutual TLS")
    return True


def diagnose(config: NodeConfig, name: str, kind: str, address: str, identity: str, where: str,
             timeout: float = 5.0) -> Target:
    """All layers for one address, stopping at the first failure (later layers are reported as skipped)."""
    target = Target(name=name, kind=kind, address=address, identity=identity)
    host, port = split_address(address)
    layers = ["dns", "tcp", "tls", "health"]

    def skip_rest(after: str) -> Target:
        for layer in layers[layers.index(after) + 1:]:
            target.add(layer, SKIP, f"not checked: {after} failed")
        return target

    addrs = check_dns(target, host, port, f"{where}.address")
    if addrs is None:
        return skip_rest("dns")
    connected = check_tcp(target, addrs, port, timeout)
    if connected is None:
        return skip_rest("tcp")
    family, sockaddr = connected
    if not check_tls(target, config, name, family, sockaddr, identity, where, timeout):
        return skip_rest("tls")
    check_health(target, config, address, identity, name, timeout)
    return target


def self_address(config: NodeConfig, address: str | None = None) -> str:
    """Where this node is reached from inside its own pod (as `vfl run` derives it)."""
    if address:
        return address
    host, port = config.listen.rsplit(":", 1)
    return f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{port}"


def run_doctor(config: NodeConfig, peers: Iterable[str] | None = None, check_self: bool = False,
               address: str | None = None, timeout: float = 5.0) -> Report:
    """One pass over the local certificate, the selected peers (default: all unless check_self) and/or this node."""
    local = Target(name=config.party, kind="local", identity=config.identity)
    check_local(config, local)
    targets = [local]
    names = list(peers or [])
    if not names and not check_self:
        names = [p.name for p in config.peers]
    selected: list[tuple[int, PeerConfig]] = []
    for name in names:
        peer = config.peer(name)  # ConfigError naming the configured peers if unknown
        selected.append((config.peers.index(peer), peer))
    if check_self:
        targets.append(diagnose(config, config.party, "self", self_address(config, address), config.identity,
                                "listen", timeout))
    for index, peer in selected:
        targets.append(diagnose(config, peer.name, "peer", peer.address, peer.identity, f"peers[{index}]", timeout))
    source = str(config.source) if config.source else None
    return Report(party=config.party, config=source, targets=targets)


def run_until_ok(run: Callable[[], Report], wait: float, interval: float = 2.0,
                 on_retry: Callable[[Report], None] | None = None) -> Report:
    """Repeat `run` until its report is OK or `wait` seconds have passed; returns the last report."""
    deadline = time.monotonic() + wait
    while True:
        report = run()
        if report.ok or time.monotonic() + interval > deadline:
            return report
        if on_retry:
            on_retry(report)
        time.sleep(interval)


_MARK = {OK: "ok  ", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}


def format_text(report: Report) -> str:
    lines = [f"vfl doctor: party {report.party}" + (f" ({report.config})" if report.config else "")]
    for t in report.targets:
        head = {"local": "this node's certificate", "self": "this node", "peer": "peer"}[t.kind]
        title = f"{head} {t.name}" if t.kind != "local" else head
        if t.address:
            title += f" at {t.address} (identity {t.identity})"
        lines.append(f"{title}: {'OK' if t.ok else 'FAILED'}")
        for c in t.checks:
            lines.append(f"  [{_MARK[c.status]}] {c.check:<6} {c.message}")
    failed = [t.name for t in report.targets if not t.ok]
    lines.append("all checks passed" if not failed else f"failed: {', '.join(failed)}")
    return "\n".join(lines)
