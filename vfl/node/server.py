"""The party node: one gRPC server with mutual TLS that hosts the Control, Party, PSI and Health services.

Kubernetes' gRPC probes cannot speak TLS, so the health service is also served alone on a plaintext
``health_listen`` port when one is configured. Nothing but health status is reachable there.
"""
from __future__ import annotations

import logging
import tempfile
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vfl.data.atomic import remove_stray_temps
from vfl.compute import Compute, open_compute
from vfl.errors import ConfigError, PermissionDenied
from vfl.governance import roles
from vfl.job.registry import JobRegistry
from vfl.node.at_rest import open_at_rest, reseal_jobs
from vfl.node.audit import NodeAudit
from vfl.node.config import NodeConfig, PeerConfig, load_node_config
from vfl.node.housekeeping import RetentionSweeper
from vfl.node.metrics import NodeMetrics
from vfl.node.network import GrpcNetwork
from vfl.node.psi_service import psi_counter
from vfl.node.serving import NodeServing
from vfl.node.services import add_scoring_service, add_services
from vfl.transport import tls
from vfl.transport.guard import InternalErrorGuard
from vfl.transport.recording import recorder_from_env

log = logging.getLogger("vfl.node")

HEALTH_SERVICES = ("", "vfl.Node")
# In insecure (test-only) mode there is no certificate, so a caller names itself in this header.
INSECURE_PARTY_HEADER = "x-vfl-insecure-party"
#: how the node names a caller whose certificate identity has a role (node config `roles` or `admins`)
USER = "user:"


class Node:
    """A long-running party node. `start()` binds the ports; `stop()` drains and closes them."""

    def __init__(self, config: NodeConfig):
        self.config = config
        self._channel_creds = None
        self._server_creds = None
        if not config.insecure:
            assert config.tls is not None
            tls.check_own_certificate(config.tls.cert, config.tls.key, config.tls.ca, config.identity)
            self._server_creds = tls.server_credentials(config.tls.cert, config.tls.key, config.tls.ca)
            self._channel_creds = tls.channel_credentials(config.tls.cert, config.tls.key, config.tls.ca)
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self.health = health.HealthServicer()
        self._server: grpc.Server | None = None
        self._health_server: grpc.Server | None = None
        self._serving_server: grpc.Server | None = None
        self.bound_port: int | None = None
        self.serving_port: int | None = None
        self.health_port: int | None = None
        self.audit: NodeAudit | None = None     # opened at start(), after the jobs_dir check
        self.peer_certificates: dict[str, str] = {}
        self.metrics: NodeMetrics | None = None    # with metrics_listen, from start()
        self.retention: RetentionSweeper | None = None
        self.metrics_port: int | None = None
        self.network = GrpcNetwork(self)
        self.jobs = JobRegistry(self)
        self.serving = NodeServing(self)   # online scoring of the models its config registers
        self._reaper_stop = threading.Event()
        self._compute: Compute | None = None

    @property
    def compute(self) -> Compute:
        """Where this node's heavy work runs (node config `compute`); connected on first use, at the latest at start."""
        with self._lock:
            if self._compute is None:
                self._compute = open_compute(self.config.compute, self.config.workers, self.config.party)
                log.info("node %s: compute backend %s", self.config.party, self._compute.describe())
            return self._compute

    # -------------------------------------------------------------- identity
    def caller(self, context: grpc.ServicerContext) -> str:
        """The configured peer name (or 'self' / 'user:<identity>') of the caller; refuses strangers.

        Both outcomes go to the audit log: the first call of each identity, and each refused caller."""
        try:
            who = self._caller(context)
        except PermissionDenied as exc:
            self.audit.refused_connection(self.describe_caller(context), context.peer(), str(exc)[:300])
            raise
        self.audit.connection(who, context.peer())
        self._remember_certificate(who, context)
        return who

    def _remember_certificate(self, who: str, context: grpc.ServicerContext) -> None:
        """The fingerprint of the certificate each peer last called with, for the lineage of its jobs."""
        pem = (context.auth_context() or {}).get("x509_pem_cert")
        if pem:
            from cryptography import x509
            from vfl.governance.lineage import certificate_sha256
            self.peer_certificates[who] = certificate_sha256(x509.load_pem_x509_certificate(pem[0]))

    def _caller(self, context: grpc.ServicerContext) -> str:
        if self.config.insecure:
            for key, value in context.invocation_metadata() or ():
                if key == INSECURE_PARTY_HEADER:
                    return value
            log.warning("refused a caller at %s: no %s header (insecure mode)", context.peer(), INSECURE_PARTY_HEADER)
            raise PermissionDenied(f"insecure mode: the call carries no {INSECURE_PARTY_HEADER} header")
        return self.identify(tls.peer_names(context))

    def describe_caller(self, context: grpc.ServicerContext) -> str:
        """Who a refused caller claimed to be, for the log: its certificate identities (or insecure header)."""
        if self.config.insecure:
            return dict(context.invocation_metadata() or ()).get(INSECURE_PARTY_HEADER, "an unnamed caller")
        return f"certificate {tls.peer_names(context)}"

    def identify(self, names: list[str]) -> str:
        """The configured peer name, 'self' or 'user:<identity>' that certificate identities ``names`` stand for.

        A 'user' is a client identity the node config gives a role (`roles`, or `admins`, which means role train).
        Refuses a certificate that matches nothing, or that matches several configured identities (two peers,
        or a peer and this node or a user). A user entry equal to this node's own identity is this node.
        """
        matches = [peer.name for peer in self.config.peers if peer.identity in names]
        if self.config.identity in names:
            matches.append("self")
        matches += [f"{USER}{identity}" for identity in self.config.roles
                    if identity in names and identity != self.config.identity]
        if len(matches) == 1:
            return matches[0]
        if matches:  # one certificate must not speak for two parties (or for a party and a user)
            # which ones (peers, users) is this node's configuration: its log says, the caller does not learn it
            log.warning("refused a caller: certificate identities %s match several configured identities %s",
                        names, matches)
            raise PermissionDenied(f"certificate identities {names} match several configured identities of "
                                   f"{self.config.party!r}; each party needs its own certificate")
        log.warning("refused a caller: certificate identities %s match no configured peer or role", names)
        raise PermissionDenied(f"certificate identities {names} match no configured peer or role of "
                               f"{self.config.party!r}")

    def role_of(self, who: str) -> str | None:
        """The role of an identified caller: this node itself has every right (as has every caller of an insecure
        test node, who names itself), a user its configured role, a peer none."""
        if who == "self" or self.config.insecure:
            return roles.ROLES[-1]
        if who.startswith(USER):
            return self.config.roles.get(who[len(USER):])
        return None

    def require_role(self, context: grpc.ServicerContext, action: str) -> str:
        """The caller (see `caller`) if its role may take `action` (vfl/governance/roles.py: submit, submit:<kind>,
        list, show, watch, cancel, score); otherwise PERMISSION_DENIED naming the role it needs, on record in the
        audit log."""
        return self.authorize(self.caller(context), action)

    def authorize(self, who: str, action: str) -> str:
        """`require_role` for a caller already identified."""
        role = self.role_of(who)
        if roles.allows(role, action):
            return who
        message = roles.refusal(who, role, action, self.config.party)
        log.warning("refused: %s", message)
        self.audit.record(who, "action refused", asked=action, role=role, needs=roles.required_role(action))
        raise PermissionDenied(message)

    def dataset(self, name: str):
        """A dataset entry, re-read from the config file so new datasets need no restart."""
        source = self.config.source
        if source is not None and source.exists():
            return load_node_config(source).dataset(name)
        return self.config.dataset(name)

    def models(self) -> dict[str, str]:
        """This party's own bottom models (node.yaml `models:`), re-read like datasets."""
        source = self.config.source
        if source is not None and source.exists():
            return load_node_config(source).models
        return self.config.models

    # -------------------------------------------------------------- peers
    def channel(self, peer_name: str) -> grpc.Channel:
        with self._lock:
            if peer_name not in self._channels:
                peer: PeerConfig = self.config.peer(peer_name)
                channel = tls.open_channel(peer.address, self._channel_creds, peer.identity)
                self._channels[peer_name] = self.metrics.channel(channel, peer_name) if self.metrics else channel
            return self._channels[peer_name]

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((INSECURE_PARTY_HEADER, self.config.party),) if self.config.insecure else ()

    # -------------------------------------------------------------- lifecycle
    def check_jobs_dir(self) -> None:
        """Refuse to start with a jobs_dir that is not a writable directory: every job would fail in it later, the
        passive party's only after the active one waited (issue 15)."""
        path = self.config.jobs_dir
        if path.exists() and not path.is_dir():
            raise ConfigError(f"jobs_dir: {path} is a file, not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".vfl-write-check-"):
                pass
        except OSError as exc:
            raise ConfigError(f"jobs_dir: cannot write in {path}: {exc.strerror or exc}") from None

    def start_at_rest(self) -> None:
        """Encryption at rest (node config `at_rest`): load or create the key, protect jobs_dir, and before any job
        runs, re-seal under the current key what a previous key (a rotation) or no key (files from before
        encryption was on) left."""
        at_rest = self.config.at_rest
        keys = open_at_rest(self.config, create=True)
        if keys is None:
            log.warning("encryption at rest is off (at_rest.encrypt: false): model parts, checkpoints and aligned "
                        "IDs under %s are stored in the clear", self.config.jobs_dir)
            return
        if not at_rest.encrypt:
            log.warning("encryption at rest is off (at_rest.encrypt: false): new job files under %s are stored in "
                        "the clear; files sealed earlier stay readable with key %s", self.config.jobs_dir,
                        keys.current_id)
            return
        log.info("encryption at rest: AES-256-GCM with key %s (%s)", keys.current_id, at_rest.key)
        report = reseal_jobs(self.config, keys)
        if report.resealed or report.sealed:
            log.info("encryption at rest: re-sealed %d file(s) under key %s, sealed %d file(s) written in the clear",
                     len(report.resealed), keys.current_id, len(report.sealed))
            self.audit.record("self", "at-rest re-sealed", key_id=keys.current_id, resealed=len(report.resealed),
                              sealed=len(report.sealed))
        if report.unknown:
            log.error("encryption at rest: %d file(s) are sealed under a key this node does not have (e.g. %s); they "
                      "cannot be read until that key is configured in at_rest.previous_keys", len(report.unknown),
                      report.unknown[0])

    def _bind(self, server: grpc.Server, address: str, key: str, creds=None) -> int:
        try:
            port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        except RuntimeError:  # grpcio raises where older versions returned 0
            port = 0
        if port == 0:
            raise ConfigError(f"{key}: cannot listen on {address}: the port is in use by another process, or the "
                              "address is not one of this host's")
        return port

    def start(self) -> None:
        self.check_jobs_dir()
        self.audit = NodeAudit(self.config)
        removed = remove_stray_temps(self.config.jobs_dir)  # what a crash mid-write left behind
        if removed:
            log.info("removed %d stray temp file(s) under %s left by an interrupted write", len(removed),
                     self.config.jobs_dir)
        self.start_at_rest()
        self.retention = RetentionSweeper(self)
        self.compute  # connect now: a node whose compute backend is unreachable must not start serving
        if self.config.insecure:
            log.warning("INSECURE: node %s runs without TLS ('insecure: true'): no peer is authenticated and "
                        "every message travels in the clear; for tests on one machine only, never between "
                        "organizations", self.config.party)
        recorder = recorder_from_env(self.config.party)
        # the guard is outermost, so nothing inside it (services, interceptors) can send exception text
        if self.config.metrics_listen:
            self.metrics = NodeMetrics(self)
            self.metrics_port = self.metrics.serve(self.config.metrics_listen)
        metering = [self.metrics.server_interceptor(self._caller)] if self.metrics else []
        interceptors = [InternalErrorGuard(self.config.party)] + metering + ([recorder] if recorder else []) + \
            [psi_counter(self.jobs)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="vfl-rpc"),
                             options=tls.server_options(), interceptors=interceptors)
        add_services(server, self)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self.bound_port = self._bind(server, self.config.listen, "listen", self._server_creds)
        if self.config.health_listen:
            hs = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="vfl-health"),
                             options=tls.server_options())
            health_pb2_grpc.add_HealthServicer_to_server(self.health, hs)
            self.health_port = self._bind(hs, self.config.health_listen, "health_listen")
            hs.start()
            self._health_server = hs
        if self.config.serving.listen:  # Score alone on its own port, for clients that need no other service
            ss = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="vfl-score"),
                             options=tls.server_options(),
                             interceptors=[InternalErrorGuard(self.config.party)] + metering +
                             ([recorder] if recorder else []))
            add_scoring_service(ss, self)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, ss)
            self.serving_port = self._bind(ss, self.config.serving.listen, "serving.listen", self._server_creds)
            ss.start()
            self._serving_server = ss
        # before serving: a client that re-attaches finds a recovered job running, not its stale status
        recovered = self.jobs.recover()
        if recovered:
            log.info("resuming %d job(s) left unfinished: %s", len(recovered), ", ".join(recovered))
        server.start()
        self._server = server
        for name in HEALTH_SERVICES:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.jobs.run_lease_reaper(self._reaper_stop)
        self.retention.start()
        if self.config.serving.models:
            self.serving.warm_up()
        log.info("node %s (%s) serving on %s", self.config.party, self.config.role, self.config.listen)

    def wait(self) -> None:
        assert self._server is not None
        self._server.wait_for_termination()

    def stop(self, grace: float = 2.0) -> None:
        """Drain, then stop serving: no new jobs, running active jobs suspend at their next step and tell their
        peers (they resume when the node starts again), within timeouts.drain_seconds; then in-flight calls get
        `grace` seconds."""
        for name in HEALTH_SERVICES:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.retention is not None:
            self.retention.stop()
        log.info("node %s shutting down: draining its jobs (up to %g s)", self.config.party,
                 self.config.timeouts.drain_seconds)
        self.jobs.shutdown()
        self._reaper_stop.set()
        for server in (self._server, self._health_server, self._serving_server):
            if server is not None:
                server.stop(grace).wait()
        self.serving.close()
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()
            compute, self._compute = self._compute, None
        if compute is not None:
            compute.close()
        if self.metrics is not None:
            self.metrics.stop()
