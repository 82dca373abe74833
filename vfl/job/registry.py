"""The node's jobs: active jobs it runs (one thread each) and passive jobs it serves.

A passive node limits how many new jobs each peer opens per minute (node config `limits`), runs one PSI
session per job (vfl/job/psi_once.py), and logs every job it opens (INFO) or refuses (WARNING).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterator

from vfl.data.atomic import atomic_write_text
from vfl.errors import (ConfigError, NotFound, OutOfOrder, PermissionDenied, ProtocolError, TooManyRequests,
                        status_of)
from vfl.job import checkpoint, psi_once, status
from vfl.job.caps import check_caps, check_parameters
from vfl.job.events import Event, EventLog
from vfl.job.limits import OpenJobLimiter
from vfl.job.spec import parse_job_spec_yaml
from vfl.job.state import JobState
from vfl.protocol.messages import CloseJobReply, CloseJobRequest, OpenJob, OpenJobReply, Reply, Request

log = logging.getLogger("vfl.jobs")


def check_policy(spec, policy, party: str) -> None:
    """Refuse a job that asks this node for something its own config does not allow (node.yaml `policy`): an
    insecure option, or more work than its caps (vfl/job/caps.py; the parameter count is checked once the
    party's feature count is known, see `_open_passive` and the active runtime's open)."""
    if spec.crypto.mode == "plaintext" and not policy.allow_plaintext:
        raise PermissionDenied(f"crypto.mode: job {spec.job_id!r} asks for plaintext split learning, which "
                               f"sends activations and gradients in the clear; {party!r} refuses it "
                               "(set policy.allow_plaintext: true in its node config for tests only)")
    if spec.crypto.mode == "paillier" and spec.crypto.key_bits < policy.min_key_bits:
        raise PermissionDenied(f"crypto.key_bits: job {spec.job_id!r} asks for {spec.crypto.key_bits}-bit keys; "
                               f"{party!r} requires at least {policy.min_key_bits} (policy.min_key_bits)")
    if spec.privacy.attacks and not policy.allow_attack_harness:
        raise PermissionDenied(f"privacy.attacks: job {spec.job_id!r} turns on the attack harness, which sends "
                               f"per-row attack scores to the active party; {party!r} does not allow it "
                               "(policy.allow_attack_harness)")
    check_caps(spec, policy, party)


ACCEPTED_SPEC = "accepted-spec.yaml"


def accepted_spec_path(job_dir):
    """The spec a passive node accepted when the job was first opened; a resume must carry the same."""
    return job_dir / ACCEPTED_SPEC


class JobRegistry:
    """The node's jobs. `node` gives the config, datasets and models, and `node.network` the active jobs' way to
    their passive parties (vfl.job.network)."""

    def __init__(self, node):
        self.node = node
        self._lock = threading.Lock()
        self.active_events: dict[str, EventLog] = {}
        self.active_threads: dict[str, threading.Thread] = {}
        self.active_timers: dict[str, object] = {}
        self.passive_jobs: dict[str, object] = {}
        self._opening: dict[str, int] = {}  # caller -> OpenJob calls of new or resumed jobs under way
        self.open_limiter = OpenJobLimiter(node.config.limits.open_jobs_per_minute)
        self.resume_limiter = OpenJobLimiter(node.config.limits.open_jobs_per_minute)

    # ------------------------------------------------------------------ active side
    def start_active(self, spec, defense=None) -> EventLog:
        from vfl.job.active import ActiveJob
        check_policy(spec, self.node.config.policy, self.node.config.party)
        with self._lock:
            if spec.job_id in self.active_events and not self.active_events[spec.job_id].finished:
                raise ConfigError(f"job_id: job {spec.job_id!r} is already running")
            if (self.node.config.job_dir(spec.job_id) / "result.json").exists():
                raise ConfigError(f"job_id: job {spec.job_id!r} already ran on this node; choose another job_id")
            # the node's audit log records the job's end (a bare test node has none)
            events = EventLog(spec.job_id, sink=getattr(getattr(self.node, "audit", None), "job_event", None))
            self.active_events[spec.job_id] = events
        from vfl.privacy.defenses import defense_for_job
        job = ActiveJob(self.node, spec, events, self.node.network,
                        defense=defense if defense is not None else defense_for_job(spec))

        def run() -> None:
            try:
                job.run()
            except Exception:  # noqa: BLE001 - the job reported it as an error event and in the log
                pass
        self.active_timers[spec.job_id] = job.timer   # read by the node's metrics
        thread = threading.Thread(target=run, name=f"job-{spec.job_id}", daemon=True)
        self.active_threads[spec.job_id] = thread
        thread.start()
        return events

    def submit(self, spec_yaml: str, submitted_by: str, cancelled: Callable[[], bool]) -> Iterator[Event]:
        spec = parse_job_spec_yaml(spec_yaml)
        if self.node.config.role != "active" or spec.active != self.node.config.party:
            raise ConfigError(f"active: jobs are submitted at the active party's node; this node is "
                              f"{self.node.config.party!r} ({self.node.config.role}) and the job's active party "
                              f"is {spec.active!r}")
        log.info("job %s submitted by %s", spec.job_id, submitted_by)
        events = self.start_active(spec)
        yield from events.follow(cancelled)

    def watch(self, job_id: str, cancelled: Callable[[], bool]) -> Iterator[Event]:
        with self._lock:
            events = self.active_events.get(job_id)
        if events is None:
            raise NotFound(f"no job {job_id!r} on this node")
        yield from events.follow(cancelled)

    # ------------------------------------------------------------------ passive side
    def handle(self, request: Request, caller: str) -> Reply:
        """Answer a call of the active party `caller` (authenticated by the transport), recording it in its job's
        wire ledger: the one entry point of the passive side, for the gRPC service and the in-process link alike."""
        if isinstance(request, OpenJob):
            reply = self.open_passive(request, caller)
            job = self.passive(request.job_id, caller)
            job.ledger.record_message("received", job.active, request)
            job.ledger.record_message("sent", job.active, reply)
            return reply
        if isinstance(request, CloseJobRequest):  # its reply carries the report, which is written before it is sent
            return self.close_passive(request, caller)
        return self.passive(request.job_id, caller).handle(request)

    def open_passive(self, request: OpenJob, caller: str) -> OpenJobReply:
        """Join the job the active party `caller` opens here, or resume it; every outcome goes to the log."""
        spec = None
        try:
            spec = parse_job_spec_yaml(request.spec_yaml)
            reply = self._open_passive(request, spec, caller)
        except Exception as exc:
            self.log_open_refused(request, caller, exc, spec)
            raise
        resumed = f" (resume from epoch {request.resume_epoch})" if request.resume_epoch >= 0 else ""
        log.info("OpenJob opened: job %r (kind %r) for caller %r%s", spec.job_id, spec.kind, caller, resumed)
        return reply

    def log_open_refused(self, request: OpenJob, caller: str, exc: BaseException, spec=None) -> None:
        kind = spec.kind if spec is not None else "unknown: the spec did not parse"
        reason = " ".join(str(exc).split())  # one line per attempt, whatever the peer's spec made the message
        log.warning("OpenJob refused: job %r (kind %r) from caller %r: %s: %s", request.job_id, kind, caller,
                    status_of(exc), reason)

    def _open_passive(self, request: OpenJob, spec, caller: str) -> OpenJobReply:
        from vfl.job.passive import PassiveJob
        party = self.node.config.party
        if spec.job_id != request.job_id:
            raise ConfigError(f"open: job id {request.job_id!r} disagrees with the spec's {spec.job_id!r}")
        if caller != spec.active:
            raise PermissionDenied(f"job {spec.job_id!r} names {spec.active!r} as active party; "
                                   f"the call came from {caller!r}")
        if party not in [p.name for p in spec.passives]:
            raise ConfigError(f"parties: job {spec.job_id!r} does not list {party!r} as a party")
        if request.resume_epoch >= 0:
            self._check_resumable(spec)
            self._take_resume_allowance(spec, caller)
        else:
            self._take_open_allowance(spec, caller)
        check_policy(spec, self.node.config.policy, party)
        with self._lock:
            old = self.passive_jobs.get(spec.job_id)
            if old is not None and old.state != JobState.CLOSED and request.resume_epoch < 0:
                raise OutOfOrder(f"job {spec.job_id!r} is already open at {party!r}")
            self._reserve_open_slot(spec, caller)
        try:
            claim = psi_once.read_claim(self.node.config.job_dir(spec.job_id))
            if request.resume_epoch < 0 and claim is not None:
                raise OutOfOrder(f"job {spec.job_id!r} already ran its PSI at {party!r} "
                                 f"({psi_once.describe_claim(claim)}); PSI runs once per job, so this job id cannot "
                                 "be opened again: open the job under a new job id")
            job = PassiveJob(self.node, spec, caller, request.resume_epoch)
            reply = job.open()
            check_parameters(spec, self.node.config.policy, party, reply.feature_dim)
            job_dir = self.node.config.job_dir(spec.job_id)
            if request.resume_epoch < 0:
                atomic_write_text(accepted_spec_path(job_dir), spec.to_yaml(), "accepted job spec", party)
            status.write_status(job_dir, party, job_id=spec.job_id, kind=spec.kind, role="passive",
                                active=caller, state=status.OPEN, stage="open")
            with self._lock:
                self.passive_jobs[spec.job_id] = job
        finally:
            with self._lock:
                self._opening[caller] -= 1
        return reply

    def _reserve_open_slot(self, spec, caller: str) -> None:
        """Count this job against `caller`'s open jobs here (node config policy.max_open_jobs_per_peer).

        Called under the lock; jobs still being opened count too, so concurrent OpenJobs cannot all slip in. A
        resume replaces its own job and does not count twice.
        """
        cap = self.node.config.policy.max_open_jobs_per_peer
        open_jobs = sorted(job_id for job_id, job in self.passive_jobs.items()
                           if job.active == caller and job.state != JobState.CLOSED and job_id != spec.job_id)
        if len(open_jobs) + self._opening.get(caller, 0) >= cap:
            raise TooManyRequests(f"job {spec.job_id!r} refused at {self.node.config.party!r}: {caller!r} already "
                                  f"has {len(open_jobs)} jobs open here ({', '.join(map(repr, open_jobs[:5]))}) and "
                                  f"{self._opening.get(caller, 0)} opening, and may have at most {cap} at once "
                                  "(node config policy.max_open_jobs_per_peer); finish or close one first")
        self._opening[caller] = self._opening.get(caller, 0) + 1

    def _check_resumable(self, spec) -> None:
        """A resume continues a job whose PSI ran here, with the spec it was opened with.

        Anything else would be a new job dodging the limit, or the job's alignment applied to another of this
        party's datasets (and a free look at its name and size).
        """
        from vfl.job.party_data import has_alignment
        job_dir = self.node.config.job_dir(spec.job_id)
        if not has_alignment(job_dir):
            raise OutOfOrder(f"job {spec.job_id!r} cannot be resumed at {self.node.config.party!r}: it has no PSI "
                             "alignment here (a resume continues a job whose PSI ran at this node); open a new job "
                             "with resume_epoch -1")
        accepted = accepted_spec_path(job_dir)
        if not accepted.exists() or accepted.read_text() != spec.to_yaml():
            raise PermissionDenied(f"job {spec.job_id!r} cannot be resumed at {self.node.config.party!r}: a resume "
                                   "must carry the job spec the job was opened with, unchanged")

    def _take_resume_allowance(self, spec, caller: str) -> None:
        """Resumes have their own allowance: a flood of new jobs cannot starve them, nor they load the node."""
        wait = self.resume_limiter.take(caller)
        if wait > 0:
            raise TooManyRequests(f"job {spec.job_id!r}: resume refused at {self.node.config.party!r}: {caller!r} "
                                  f"may resume {self.resume_limiter.per_minute} jobs per minute here (node config "
                                  f"limits.open_jobs_per_minute) and has used them; the next one is allowed in "
                                  f"{wait:.1f} s")

    def _take_open_allowance(self, spec, caller: str) -> None:
        """Every attempt to open a new job spends one of the caller's per-minute allowance (vfl/job/limits.py).

        Resumes do not: they cannot run PSI again (vfl/job/psi_once.py), and a job that lost a peer mid-training
        must be able to carry on however many new jobs the same peer opened meanwhile.
        """
        wait = self.open_limiter.take(caller)
        if wait > 0:
            limit = self.open_limiter.per_minute
            raise TooManyRequests(f"job {spec.job_id!r} (kind {spec.kind!r}) refused at {self.node.config.party!r}: "
                                  f"{caller!r} may open {limit} new jobs per minute here (node config "
                                  f"limits.open_jobs_per_minute: {limit}) and has used them; the next one is "
                                  f"allowed in {wait:.1f} s")

    def passive(self, job_id: str, caller: str):
        with self._lock:
            job = self.passive_jobs.get(job_id)
        if job is None:
            raise NotFound(f"no open job {job_id!r} at {self.node.config.party!r}")
        if caller != job.active:
            raise PermissionDenied(f"job {job_id!r} belongs to active party {job.active!r}, not {caller!r}")
        return job

    def close_passive(self, request: CloseJobRequest, caller: str) -> CloseJobReply:
        with self._lock:
            job = self.passive_jobs.get(request.job_id)
        if job is None:  # e.g. this node restarted after preparing: a commit or an abort works from its disk
            return self._close_on_disk(request, caller)
        job = self.passive(request.job_id, caller)
        job.ledger.record_message("received", job.active, request)
        reply = job.close(request)
        if job.state == JobState.CLOSED:
            with self._lock:
                if self.passive_jobs.get(request.job_id) is job:
                    self.passive_jobs.pop(request.job_id)
        return reply

    def _lineage_from_disk(self, job_dir) -> None:
        """The signed lineage of a job committed from its disk, with the spec this node accepted for it."""
        from vfl.job.lineage import record_job_lineage
        from vfl.job.spec import load_job_spec
        try:
            spec = load_job_spec(accepted_spec_path(job_dir))
        except Exception as exc:  # noqa: BLE001 - the job is committed; its lineage is what is missing
            log.error("job %r: no lineage written: its accepted spec cannot be read: %s", job_dir.name, exc)
            return
        record_job_lineage(self.node, spec, job_dir, "passive")

    def _close_on_disk(self, request: CloseJobRequest, caller: str) -> CloseJobReply:
        """Commit or abort a job this node no longer holds in memory, from its status and staged artifacts."""
        from vfl.job.passive import commit_on_disk
        party = self.node.config.party
        job_dir = self.node.config.job_dir(request.job_id)
        found = status.read_status(job_dir)
        if found is None or found.get("role") != "passive" or (request.status == "succeeded" and
                                                                request.phase != "commit"):
            raise NotFound(f"no open job {request.job_id!r} at {party!r}")
        if found.get("active") != caller:
            raise PermissionDenied(f"job {request.job_id!r} belongs to active party {found.get('active')!r}, "
                                   f"not {caller!r}")
        state = found.get("state")
        model = checkpoint.model_part_path(job_dir)
        if request.status == "succeeded":
            if state == status.PREPARED:
                commit_on_disk(job_dir, party)
                log.info("job %r: closed (succeeded; committed after a restart)", request.job_id)
                self._lineage_from_disk(job_dir)
            elif state != status.SUCCEEDED:
                raise OutOfOrder(f"close: job {request.job_id!r} cannot commit at {party!r}: it is {state} here"
                                 + (f" ({found['reason']})" if found.get("reason") else ""))
            exists = model.exists() or checkpoint.staged(job_dir, model).exists()
            return CloseJobReply(model_path=str(model.relative_to(self.node.config.jobs_dir)) if exists else "")
        if state == status.SUCCEEDED:  # its active party revokes a commit: another party could not commit
            checkpoint.discard_committed(job_dir)
        checkpoint.discard_staged(job_dir)
        if request.status not in (status.FAILED, status.CANCELLED, status.SUSPENDED):
            raise ProtocolError(f"close: unknown status {request.status!r}")
        status.write_status(job_dir, party, state=request.status, reason=request.reason or None)
        log.info("job %r: closed (%s) from its saved state%s", request.job_id, request.status,
                 f": {' '.join(request.reason.split())}" if request.reason else "")
        return CloseJobReply()

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        """Nothing to do at start: passive jobs are reopened (resumed) by their active party's call."""

    def shutdown(self) -> None:
        pass
