"""PSI inside a job: the active runtime drives `psi` over the node's own mTLS channels, and every node
mounts the PSI service, which hands a passive job its IDs and receives its alignment."""
from __future__ import annotations

import logging
import threading
import uuid

import numpy as np

from psi import PsiConfig
from psi.errors import PermissionDenied as PsiPermissionDenied
from psi.transport.client import run_session
from psi.transport.server import add_psi_service as mount_psi_service
from vfl.job.psi_wire import PsiServerCounter, counted_channel
from vfl.transport.chunking import PermissionDenied

log = logging.getLogger("vfl.psi")


def run_psi_as_active(job, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The common IDs in the agreed order and this party's row of each, from a PSI session with all passives."""
    spec, node = job.spec, job.node
    config = PsiConfig(strip=spec.psi.strip, lowercase=spec.psi.lowercase, workers=node.config.workers,
                       session_id=f"{spec.job_id}.psi.{uuid.uuid4().hex[:8]}", metadata={"job_id": spec.job_id})
    last = {"t": 0.0}

    def progress(stage: str, done: int, total: int) -> None:
        import time
        now = time.time()
        if now - last["t"] > 0.5 or done >= total:
            last["t"] = now
            job.emit("progress", stage="psi", progress=done / max(total, 1),
                     metrics={"psi_stage": stage, "done": done, "total": total})

    # every PSI envelope is counted in the job's ledger, for the privacy report
    channels = {name: counted_channel(node.channel(name), job.ledger, name) for name in job.links}
    result = run_session(channels, ids, config, me=spec.active, progress=progress,
                         call_metadata=node.call_metadata())
    return np.array(result.ids, dtype=object), np.asarray(result.rows, dtype=np.int64)


def psi_counter(registry) -> PsiServerCounter:
    """The server interceptor that counts a passive job's PSI traffic in that job's ledger."""
    def find_job(job_id: str):
        with registry._lock:
            return registry.passive_jobs.get(job_id)
    return PsiServerCounter(find_job)


def add_psi_service(server, registry) -> None:
    """Mount PSI on the node's server. Only the active party of an open job may run PSI on its IDs."""
    sessions: dict[str, str] = {}
    lock = threading.Lock()
    node = registry.node

    def id_provider(hello, peer):
        job_id = hello.metadata.get("job_id", "")
        with registry._lock:
            job = registry.passive_jobs.get(job_id)
        if job is None:
            raise PsiPermissionDenied(f"no open job {job_id!r} at {node.config.party!r} for PSI")
        if not node.config.insecure:
            try:  # the node's own rule: a certificate matching several configured identities is refused
                who = node.identify(list(peer.names))
            except PermissionDenied as exc:
                raise PsiPermissionDenied(f"PSI for job {job_id!r}: {exc}") from None
            if who != job.active:
                raise PsiPermissionDenied(f"PSI for job {job_id!r} may only be run by its active party "
                                          f"{job.active!r}; the call came from {who!r}")
        with lock:
            sessions[hello.session_id] = job_id
        return job.psi_ids()

    def on_result(session_id: str, result) -> None:
        with lock:
            job_id = sessions.pop(session_id, None)
        with registry._lock:
            job = registry.passive_jobs.get(job_id) if job_id else None
        if job is not None and result.rows is not None:
            job.on_psi_result(result.ids, result.rows)

    def on_error(session_id: str, error: BaseException) -> None:
        with lock:
            sessions.pop(session_id, None)
        log.info("PSI session %s failed: %s", session_id, error)

    mount_psi_service(server, id_provider, on_result=on_result, on_error=on_error)
