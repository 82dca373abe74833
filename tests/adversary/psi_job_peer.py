"""A deviating active party, for the adversary tests: everything the active role holds, and nothing more.

It loads its own node's config (certificate, key, CA) from a `vfl.api.Federation` workdir, writes its own job
specs, and talks to a real passive node process over gRPC with mutual TLS, exactly as its node would
(`vfl/job/links.py` for OpenJob / CloseJob, `vfl/job/psi_bridge.py` for PSI), but it is free to send any sequence
of calls and PSI hellos. It never reads the passive party's table: the tests only use it to choose targets and
to check what the adversary learned.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml

from psi import PsiConfig
from psi.errors import PsiError
from psi.transport.client import run_session
from vfl.node.config import load_node_config
from vfl.transport import tls
from vfl.transport.chunking import read_one, to_chunks
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc


@dataclass
class Refused:
    """What the adversary gets instead of a result: the status code name and the passive node's message."""
    code: str
    message: str


class DeviatingActive:
    """The active party `me` of a Federation, calling passive party `peer` directly over mutual TLS."""

    def __init__(self, fed, me: str = "guest", peer: str = "host"):
        self.fed, self.me, self.peer = fed, me, peer
        config = load_node_config(fed.configs[me])
        creds = tls.channel_credentials(config.tls.cert, config.tls.key, config.tls.ca)
        self.channel = tls.open_channel(f"127.0.0.1:{fed.ports[peer]}", creds, peer)
        self.stub = pb_grpc.PartyStub(self.channel)

    def spec(self, job_id: str, kind: str = "train", **sections) -> dict:
        """A job spec naming both parties' registered datasets, as the active party writes it."""
        spec = {"job_id": job_id, "kind": kind, "active": self.me, "task": "binary",
                "parties": {self.me: {"dataset": "table"}, self.peer: {"dataset": "table"}},
                "model": {"bottom": {"out": 4}, "interactive": {"out": 4}}, "crypto": {"key_bits": 1024}}
        spec.update(sections)
        return spec

    def open(self, job_id: str, kind: str = "train", resume_epoch: int = -1, **sections) -> pb.OpenJobReply | Refused:
        request = pb.OpenJob(job_id=job_id, spec_yaml=yaml.safe_dump(self.spec(job_id, kind, **sections)),
                             resume_epoch=resume_epoch)
        try:
            return read_one(self.stub.OpenJob(to_chunks(request), timeout=60), pb.OpenJobReply)
        except grpc.RpcError as exc:
            return Refused(exc.code().name, exc.details() or "")

    def close(self, job_id: str) -> pb.CloseJobReply | Refused:
        try:
            return read_one(self.stub.CloseJob(to_chunks(pb.CloseJobRequest(job_id=job_id, status="failed")),
                                               timeout=60), pb.CloseJobReply)
        except grpc.RpcError as exc:
            return Refused(exc.code().name, exc.details() or "")

    def psi(self, job_id: str, ids: list[str], mode: str = "intersection", strip: bool = True,
            lowercase: bool = False):
        """One PSI session naming `job_id`, with whatever settings the adversary picks: the PsiResult or a Refused."""
        config = PsiConfig(mode=mode, strip=strip, lowercase=lowercase, workers=0, metadata={"job_id": job_id})
        try:
            return run_session({self.peer: self.channel}, ids, config, me=self.me)
        except PsiError as exc:
            return Refused(getattr(exc, "code", type(exc).__name__), str(exc))

    def membership(self, job_id: str, candidate: str) -> int | Refused:
        """The membership oracle: a one-ID cardinality session; its size is 1 iff `candidate` is in P's table."""
        outcome = self.psi(job_id, [candidate], mode="cardinality")
        return outcome if isinstance(outcome, Refused) else outcome.size

    def healthy(self) -> bool:
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        reply = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(service="vfl.Node"),
                                                               timeout=10)
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def log_text(self) -> str:
        """The passive node's log (stdout and stderr of its process), as its operator would read it."""
        return Path(self.fed.workdir, f"{self.peer}.log").read_text(errors="replace")

    def shutdown(self) -> None:
        self.channel.close()
