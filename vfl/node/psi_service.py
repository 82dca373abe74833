"""PSI inside a job at a passive node: the PSI service hands a passive job its IDs for the job's one session and
gives it the alignment (or, for a cardinality job, only the size). The once-per-job rules are in
vfl/job/psi_once.py; the active side runs its session through the node's network (vfl/node/network.py)."""
from __future__ import annotations

import logging
import threading

from psi.errors import PermissionDenied as PsiPermissionDenied
from psi.errors import PsiError
from psi.protocol.messages import Mode
from psi.transport.server import add_psi_service as mount_psi_service
from vfl.errors import PermissionDenied, StorageError, quote
from vfl.transport.psi_wire import PsiServerCounter

log = logging.getLogger("vfl.psi")


class ClaimNotWritten(PsiError):
    """The job's PSI claim could not be written here (a full or read-only jobs_dir): no session, a clear reason."""

    def __init__(self, message: str, code: str = "FAILED_PRECONDITION"):
        super().__init__(message, code)
        self.grpc_code = code

    def __str__(self) -> str:
        return str(self.args[0])


def psi_counter(registry) -> PsiServerCounter:
    """The server interceptor that counts a passive job's PSI traffic in that job's ledger."""
    def find_job(job_id: str):
        with registry._lock:
            return registry.passive_jobs.get(job_id)
    return PsiServerCounter(find_job)


def add_psi_service(server, registry) -> None:
    """Mount PSI on the node's server. Only the active party of an open job may run PSI on its IDs, once per job."""
    sessions: dict[str, str] = {}
    lock = threading.Lock()
    node = registry.node

    def caller_of(job_id: str, job, peer) -> str:
        if node.config.insecure:
            return job.active
        try:  # the node's own rule: a certificate matching several configured identities is refused
            who = node.identify(list(peer.names))
        except PermissionDenied as exc:
            raise PsiPermissionDenied(f"PSI for job {quote(job_id)}: {exc}") from None
        if who != job.active:
            raise PsiPermissionDenied(f"PSI for job {quote(job_id)} may only be run by its active party "
                                      f"{job.active!r}; the call came from {who!r}")
        return who

    def id_provider(hello, peer):
        job_id = hello.metadata.get("job_id", "")
        with registry._lock:
            job = registry.passive_jobs.get(job_id)
        try:
            if job is None:
                raise PsiPermissionDenied(f"no open job {quote(job_id)} at {node.config.party!r} for PSI")
            caller = caller_of(job_id, job, peer)
            try:
                ids = job.claim_psi(hello, caller)
            except StorageError as exc:
                raise ClaimNotWritten(str(exc), exc.status) from None
        except PsiError as exc:
            log.warning("PSI session %s for job %s from %s refused: %s: %s", quote(hello.session_id), quote(job_id),
                        list(peer.names) or "an uncertified peer", exc.grpc_code, " ".join(str(exc).split()))
            node.audit.record(", ".join(peer.names) or "an uncertified peer", "psi session refused",
                              job_id=job_id[:200], session=hello.session_id[:64], status=str(exc.grpc_code))
            raise
        node.audit.record(caller, "psi session", job_id=job_id, session=hello.session_id[:64],
                          mode=Mode(hello.mode).value, kind=job.spec.kind)
        with lock:
            sessions[hello.session_id] = job_id
        log.info("PSI session %s for job %r (kind %r, %s mode) from %r: claimed the job's one session",
                 hello.session_id, job_id, job.spec.kind, Mode(hello.mode).value, caller)
        return ids

    def job_of(session_id: str):
        with lock:
            job_id = sessions.pop(session_id, None)
        with registry._lock:
            return job_id, registry.passive_jobs.get(job_id) if job_id else None

    def on_result(session_id: str, result) -> None:
        job_id, job = job_of(session_id)
        if job is None:
            return
        if result.mode == Mode.CARDINALITY:
            job.on_cardinality_result(result.size)
        else:
            job.on_psi_result(result)

    def on_error(session_id: str, error: BaseException) -> None:
        job_id, _ = job_of(session_id)
        if job_id:  # refusals in id_provider are logged there; this is a session that started and then failed
            log.warning("PSI session %s for job %r failed: %s; the job's one PSI session is used, so the job must "
                        "run again under a new job id", session_id, job_id, error)

    # the PSI work of this node's passive jobs runs on its compute backend, like everything else heavy; a session
    # whose stream broke waits as long for its active party to reattach it as that party waits for us
    mount_psi_service(server, id_provider, on_result=on_result, on_error=on_error, engine=node.compute.psi_engine(),
                      resume_seconds=node.config.timeouts.resume_wait_seconds)
