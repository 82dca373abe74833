"""How an active job reaches its passive parties: a link per party and the job's one PSI session.

The node supplies the gRPC implementation (vfl/node/network.py); tests run whole jobs in one process with
`vfl.job.local.LocalNetwork`. The job runtime sees only this interface.
"""
from __future__ import annotations

from typing import Callable, Protocol

from psi import PsiResult
from vfl.job.ledger import WireLedger
from vfl.job.spec import JobSpec
from vfl.protocol.link import PartyLink

#: progress(stage, done, total) of a PSI session
PsiProgress = Callable[[str, int, int], None]


class PeerNetwork(Protocol):
    def link(self, peer: str) -> PartyLink: ...

    def run_psi(self, spec: JobSpec, ids, ledger: WireLedger, progress: PsiProgress) -> PsiResult:
        """The job's one PSI session with all its passive parties, in the mode and canonicalization of the spec.
        `ids`: this party's IDs, in memory or read in chunks (psi.protocol.ids.ChunkedIds)."""
        ...


def psi_config(spec: JobSpec, workers: int, session_id: str):
    """The PSI session a job's spec fixes: its mode, its canonicalization, and the job id for the passive nodes."""
    from psi import PsiConfig
    return PsiConfig(strip=spec.psi.strip, lowercase=spec.psi.lowercase, mode=spec.psi_mode, workers=workers,
                     session_id=session_id, metadata={"job_id": spec.job_id})
