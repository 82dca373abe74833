"""The node's network for its active jobs: a gRPC link per passive party, PSI over the node's mTLS channels."""
from __future__ import annotations

import uuid

from psi import PsiResult
from psi.transport.client import run_session
from vfl.job.ledger import WireLedger
from vfl.job.network import PsiProgress, psi_config
from vfl.job.spec import JobSpec
from vfl.transport.party_link import GrpcPartyLink
from vfl.transport.psi_wire import counted_channel


class GrpcNetwork:
    def __init__(self, node):
        self.node = node

    def link(self, peer: str) -> GrpcPartyLink:
        return GrpcPartyLink(peer, self.node.channel(peer), self.node.call_metadata(),
                             timeout=self.node.config.timeouts.call_seconds)

    def run_psi(self, spec: JobSpec, ids, ledger: WireLedger, progress: PsiProgress) -> PsiResult:
        compute = self.node.compute
        config = psi_config(spec, compute.parallelism, f"{spec.job_id}.psi.{uuid.uuid4().hex[:8]}")
        # every PSI envelope is counted in the job's ledger, for the privacy report
        channels = {p.name: counted_channel(self.node.channel(p.name), ledger, p.name) for p in spec.passives}
        # a stream that breaks mid-session is reattached while the node would wait for a lost peer anyway
        return run_session(channels, ids, config, me=spec.active, progress=progress,
                           call_metadata=self.node.call_metadata(), engine=compute.psi_engine(),
                           resume_seconds=self.node.config.timeouts.resume_wait_seconds)
