"""The node's jobs: active jobs it runs (one thread each) and passive jobs it serves.

A passive node limits how many new jobs each peer opens per minute (node config `limits`), runs one PSI
session per job (vfl/job/psi_once.py), and logs every job it opens (INFO) or refuses (WARNING).
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from vfl.data.atomic import atomic_write_text
from vfl.errors import (ConfigError, NotFound, OutOfOrder, PermissionDenied, ProtocolError, TooManyRequests,
                        Unavailable, VflError, quote, shorten, status_of)
from vfl.job import checkpoint, psi_once, status
from vfl.job.caps import check_caps, check_parameters
from vfl.job.events import Event, EventLog
from vfl.job.limits import OpenJobLimiter
from vfl.job.spec import check_job_id, parse_job_spec_yaml
from vfl.job.state import JobState
from vfl.protocol.messages import (FRESH, CloseJobReply, CloseJobRequest, OpenJob, OpenJobReply, RenewLease,
                                   RenewLeaseReply, Reply, Request)

log = logging.getLogger("vfl.jobs")


def check_peer_job_id(job_id: str) -> None:
    """A job id a peer sent names a folder under jobs_dir: it is checked before anything uses it (in a path, a
    message, a log line), and refused with a quotation cut short."""
    try:
        check_job_id(job_id)
    except ConfigError as exc:
        raise ProtocolError(str(exc)) from None


def peer_reason(reason: str) -> str:
    """The reason an active party gives for closing a job, as this node keeps it (status.json, its log): bounded
    like any error message, whatever length the peer sent."""
    return shorten(reason or "")


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
        self.active_jobs: dict[str, object] = {}  # job id -> ActiveJob, while it runs
        self.passive_jobs: dict[str, object] = {}
        # passive jobs a restart found prepared on disk: job id -> when; rolled back if no commit comes in a lease
        self._prepared_on_disk: dict[str, float] = {}
        self.draining = False  # set on SIGTERM: no new work
        self._unrecorded: dict[str, dict] = {}  # passive jobs closed while their status could not be written
        self._opening: dict[str, int] = {}  # caller -> OpenJob calls of new or resumed jobs under way
        self.open_limiter = OpenJobLimiter(node.config.limits.open_jobs_per_minute)
        self.resume_limiter = OpenJobLimiter(node.config.limits.open_jobs_per_minute)

    # ------------------------------------------------------------------ active side
    def start_active(self, spec, defense=None, recovered: dict | None = None, commit_only: bool = False) -> EventLog:
        """Run an active job in its own thread; `recovered`: its status, when a restarted node resumes it
        (`commit_only`: it was committing, so only its close's second phase remains)."""
        from vfl.job.active import ActiveJob
        check_policy(spec, self.node.config.policy, self.node.config.party)
        job_dir = self.node.config.job_dir(spec.job_id)
        with self._lock:
            if self.draining:
                raise Unavailable(f"node {self.node.config.party!r} is shutting down and takes no new jobs; submit "
                                  "again once it is back")
            if spec.job_id in self.active_events and not self.active_events[spec.job_id].finished:
                raise ConfigError(f"job_id: job {spec.job_id!r} is already running")
            found = status.read_status(job_dir)
            if recovered is None and (found is not None or (job_dir / "result.json").exists()):
                state = f" ({found.get('state')})" if found else ""
                raise ConfigError(f"job_id: job {spec.job_id!r} already ran on this node{state}; choose another "
                                  "job_id")
            # the node's audit log records the job's end (a bare test node has none)
            events = EventLog(spec.job_id, sink=getattr(getattr(self.node, "audit", None), "job_event", None))
            self.active_events[spec.job_id] = events
        from vfl.privacy.defenses import defense_for_job
        job = ActiveJob(self.node, spec, events, self.node.network,
                        defense=defense if defense is not None else defense_for_job(spec), recovered=recovered)

        def run() -> None:
            try:
                job.run_commit() if commit_only else job.run()
            except Exception:  # noqa: BLE001 - the job reported it as an error event and in the log
                pass
            finally:
                with self._lock:
                    self.active_jobs.pop(spec.job_id, None)
        self.active_timers[spec.job_id] = job.timer   # read by the node's metrics
        thread = threading.Thread(target=run, name=f"job-{spec.job_id}", daemon=True)
        with self._lock:
            self.active_threads[spec.job_id] = thread
            self.active_jobs[spec.job_id] = job
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
        """Every event of a job this node runs or ran since it started, then the new ones to its end; for an older
        job, one final event from its status on disk (`vfl attach` after the job ended or the node restarted)."""
        with self._lock:
            events = self.active_events.get(job_id)
        if events is not None:
            yield from events.follow(cancelled)
            return
        info = self.show_job(job_id)
        if info.get("role") != "active":
            raise NotFound(f"job {job_id!r} is not an active job of {self.node.config.party!r}: watch it at its "
                           f"active party {info.get('active')!r}")
        yield self._final_event(info)

    def _final_event(self, info: dict) -> Event:
        state, job_id = info.get("state"), info["job_id"]
        result = info.get("result")
        if state == status.SUCCEEDED and result is not None:
            return Event(job_id=job_id, kind="result", message=f"job {job_id} succeeded", stage="done",
                         metrics=result, done=True)
        reason = f": {info['reason']}" if info.get("reason") else ""
        if state not in status.FINAL | {status.SUSPENDED}:
            reason = (" on disk, but it does not run on this node: it could not be recovered after a restart (see "
                      "the node's log)")
        kind = state if state in (status.CANCELLED, status.SUSPENDED) else "error"
        return Event(job_id=job_id, kind=kind, message=f"job {job_id} is {state} (stage {info.get('stage')}){reason}",
                     stage=info.get("stage", ""), done=True, failed=True)

    # ------------------------------------------------------------------ job operations (vfl jobs, cancel)
    def list_jobs(self) -> list[dict]:
        """Every job with a status under this node's jobs_dir, newest first, with the live stage of running ones."""
        jobs = []
        for job_dir in self.job_dirs():
            found = status.read_status(job_dir)
            if found:
                jobs.append(self._live(dict(found, job_id=found.get("job_id") or job_dir.name)))
        return sorted(jobs, key=lambda j: j.get("created", 0), reverse=True)

    def _live(self, info: dict) -> dict:
        """A job's status on disk, overlaid with what this node knows in memory: the live stage and progress of a
        running job, and the outcome of a job whose status could not be written (a full or read-only disk)."""
        job_id = info["job_id"]
        with self._lock:
            events = self.active_events.get(job_id)
            unrecorded = self._unrecorded.get(job_id)
        last = events.last() if events is not None else None
        if last is not None and not last.done and info.get("state") in (status.RUNNING, status.COMMITTING):
            info["stage"] = last.stage or info.get("stage")
            info["progress"] = last.progress
        elif last is not None and last.done and info.get("state") in (status.RUNNING, status.COMMITTING):
            state = {"result": status.SUCCEEDED, "cancelled": status.CANCELLED,
                     "suspended": status.SUSPENDED}.get(last.kind, status.FAILED)
            info.update(state=state, stage=last.stage, reason=last.message if last.failed else None,
                        note="this outcome could not be written to the job's status.json")
        elif unrecorded is not None:
            info.update(unrecorded, note="this outcome could not be written to the job's status.json")
        return info

    def show_job(self, job_id: str) -> dict:
        """One job: its status, its result (if it succeeded), the last events (if it ran since this node started)."""
        from vfl.job.spec import check_job_id
        check_job_id(job_id)
        job_dir = self.node.config.job_dir(job_id)
        found = status.read_status(job_dir)
        if found is None:
            raise NotFound(f"no job {job_id!r} on {self.node.config.party!r}")
        info = self._live(dict(found, job_id=job_id))
        result = job_dir / "result.json"
        if found.get("role") == "active" and found.get("state") == status.SUCCEEDED and result.exists():
            import json
            info["result"] = json.loads(result.read_text())
        with self._lock:
            events = self.active_events.get(job_id)
        if events is not None:
            info["events"] = [{"kind": e.kind, "stage": e.stage, "message": e.message, "time": e.time}
                              for e in events.tail(20) if e.kind != "progress"]
        return info

    def cancel(self, job_id: str, by: str, wait: float = 60.0) -> dict:
        """Cancel a job: at its active party it stops at its next step and every party closes it as cancelled; at a
        passive party only this party's side closes (its active party then fails the job, naming this party)."""
        info = self.show_job(job_id)
        if info.get("state") in status.FINAL:
            raise OutOfOrder(f"job {job_id!r} is already {info['state']} at {self.node.config.party!r}")
        reason = f"cancelled by {by}"
        with self._lock:
            job = self.active_jobs.get(job_id)
            thread = self.active_threads.get(job_id)
            passive = self.passive_jobs.get(job_id)
        if job is not None:
            job.request_stop(status.CANCELLED, reason)
            log.info("job %s: %s", job_id, reason)
            if thread is not None:
                thread.join(wait)
        elif passive is not None:
            passive.cancel(f"{reason} at {self.node.config.party!r}")
            self._forget(passive)
        else:  # not running here (suspended, interrupted, or left by a restart that could not resume it)
            status.write_status(self.node.config.job_dir(job_id), self.node.config.party, state=status.CANCELLED,
                                reason=reason)
        return self.show_job(job_id)

    # ------------------------------------------------------------------ passive side
    def handle(self, request: Request, caller: str) -> Reply:
        """Answer a call of the active party `caller` (authenticated by the transport), recording it in its job's
        wire ledger: the one entry point of the passive side, for the gRPC service and the in-process link alike."""
        if not isinstance(request, OpenJob):  # an OpenJob's is checked where its refusal is logged
            check_peer_job_id(request.job_id)
        if isinstance(request, OpenJob):
            reply = self.open_passive(request, caller)
            job = self.passive(request.job_id, caller)
            job.ledger.record_message("received", job.active, request)
            job.ledger.record_message("sent", job.active, reply)
            return reply
        if isinstance(request, CloseJobRequest):  # its reply carries the report, which is written before it is sent
            return self.close_passive(request, caller)
        if isinstance(request, RenewLease):
            return RenewLeaseReply(lease_seconds=self.passive(request.job_id, caller).renew())
        return self.passive(request.job_id, caller).handle(request)

    def open_passive(self, request: OpenJob, caller: str) -> OpenJobReply:
        """Join the job the active party `caller` opens here, or resume it; every outcome goes to the log."""
        spec = None
        try:
            check_peer_job_id(request.job_id)
            spec = parse_job_spec_yaml(request.spec_yaml)
            reply = self._open_passive(request, spec, caller)
        except Exception as exc:
            self.log_open_refused(request, caller, exc, spec)
            raise
        resumed = f" (resume from epoch {request.resume_epoch})" if request.resume_epoch >= 0 else \
            " (resume on its PSI alignment)" if request.resume_epoch != FRESH else ""
        log.info("OpenJob opened: job %r (kind %r) for caller %r%s", spec.job_id, spec.kind, caller, resumed)
        return reply

    def log_open_refused(self, request: OpenJob, caller: str, exc: BaseException, spec=None) -> None:
        kind = spec.kind if spec is not None else "unknown: the spec did not parse"
        reason = " ".join(str(exc).split())  # one line per attempt, whatever the peer's spec made the message
        log.warning("OpenJob refused: job %s (kind %r) from caller %r: %s: %s", quote(request.job_id), kind, caller,
                    status_of(exc), reason)

    def _open_passive(self, request: OpenJob, spec, caller: str) -> OpenJobReply:
        from vfl.job.passive import PassiveJob
        party = self.node.config.party
        if spec.job_id != request.job_id:
            raise ConfigError(f"open: job id {quote(request.job_id)} disagrees with the spec's {spec.job_id!r}")
        if caller != spec.active:
            raise PermissionDenied(f"job {spec.job_id!r} names {spec.active!r} as active party; "
                                   f"the call came from {caller!r}")
        if party not in [p.name for p in spec.passives]:
            raise ConfigError(f"parties: job {spec.job_id!r} does not list {party!r} as a party")
        if self.draining:
            raise Unavailable(f"node {party!r} is shutting down; open job {spec.job_id!r} again once it is back")
        if request.resume_epoch != FRESH:
            self._check_resumable(spec)
            self._take_resume_allowance(spec, caller)
        else:
            self._take_open_allowance(spec, caller)
        check_policy(spec, self.node.config.policy, party)
        with self._lock:
            old = self.passive_jobs.get(spec.job_id)
            # the same open again before its PSI (its reply was lost) opens the job anew; anything else is refused
            retry = old is not None and old.state == JobState.OPENED and old.spec.to_yaml() == spec.to_yaml()
            if old is not None and old.state != JobState.CLOSED and request.resume_epoch == FRESH and not retry:
                raise OutOfOrder(f"job {spec.job_id!r} is already open at {party!r}")
            self._reserve_open_slot(spec, caller)
        try:
            claim = psi_once.read_claim(self.node.config.job_dir(spec.job_id))
            if request.resume_epoch == FRESH and claim is not None:
                raise OutOfOrder(f"job {spec.job_id!r} already ran its PSI at {party!r} "
                                 f"({psi_once.describe_claim(claim)}); PSI runs once per job, so this job id cannot "
                                 "be opened again: open the job under a new job id")
            job = PassiveJob(self.node, spec, caller, request.resume_epoch)
            reply = job.open()
            check_parameters(spec, self.node.config.policy, party, reply.feature_dim)
            job_dir = self.node.config.job_dir(spec.job_id)
            if request.resume_epoch == FRESH:
                atomic_write_text(accepted_spec_path(job_dir), spec.to_yaml(), "accepted job spec", party)
            status.write_status(job_dir, party, job_id=spec.job_id, kind=spec.kind, role="passive",
                                active=caller, state=status.OPEN, stage="open")
            with self._lock:
                self.passive_jobs[spec.job_id] = job
                self._prepared_on_disk.pop(spec.job_id, None)
            if old is not None:  # a resume replaces the job: the key of its earlier set-up ends now
                old.release_key()
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
        found = status.read_status(job_dir) or {}
        if found.get("state") in status.FINAL:
            raise OutOfOrder(f"job {spec.job_id!r} cannot be resumed at {self.node.config.party!r}: it is "
                             f"{found['state']} here" + (f" ({found['reason']})" if found.get("reason") else ""))
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
            self._prepared_on_disk.pop(request.job_id, None)
        if job is None:  # e.g. this node restarted after preparing: a commit or an abort works from its disk
            return self._close_on_disk(request, caller)
        job = self.passive(request.job_id, caller)
        job.ledger.record_message("received", job.active, request)
        reply = job.close(request)
        if job.state == JobState.CLOSED:
            self._forget(job)
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

    def _forget(self, job) -> None:
        """A passive job closed: it leaves memory, keeping its outcome if its status could not record it."""
        with self._lock:
            if self.passive_jobs.get(job.spec.job_id) is job:
                del self.passive_jobs[job.spec.job_id]
            if job.unrecorded is not None:
                self._unrecorded[job.spec.job_id] = job.unrecorded

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
            raise ProtocolError(f"close: unknown status {quote(request.status)}")
        if state in (status.FAILED, status.CANCELLED):  # closed here first (e.g. this node's operator cancelled it)
            log.info("job %r: already %s here; the active party's close (%s) leaves it so", request.job_id, state,
                     request.status)
            return CloseJobReply()
        reason = peer_reason(request.reason)
        status.write_status(job_dir, party, state=request.status, reason=reason or None)
        log.info("job %r: closed (%s) from its saved state%s", request.job_id, request.status,
                 f": {' '.join(reason.split())}" if reason else "")
        return CloseJobReply()

    # ------------------------------------------------------------------ leases
    def expire_leases(self, now: float | None = None) -> list[str]:
        """Close every passive job whose active party has sent nothing for its lease (timeouts.lease_seconds): a job
        never stays open here without an active party behind it. A prepared close whose commit never came is
        rolled back, in memory or (after a restart) on disk. Returns the job ids closed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            expired = [job for job in self.passive_jobs.values() if job.lease_expired(now)]
            lease = self.node.config.timeouts.lease_seconds
            on_disk = [job_id for job_id, since in self._prepared_on_disk.items() if now - since > lease]
            for job_id in on_disk:
                del self._prepared_on_disk[job_id]
        for job in expired:
            log.warning("job %r: its active party %r sent nothing for %g s (timeouts.lease_seconds): closing it",
                        job.spec.job_id, job.active, job.lease_seconds)
            job.expire()
            self._forget(job)
        for job_id in on_disk:
            self._roll_back_on_disk(job_id, f"lease expired before the commit: no word from its active party for "
                                            f"{lease:g} s after this node restarted (timeouts.lease_seconds)")
        return [job.spec.job_id for job in expired] + on_disk

    def _roll_back_on_disk(self, job_id: str, reason: str) -> None:
        job_dir = self.node.config.job_dir(job_id)
        found = status.read_status(job_dir) or {}
        if found.get("state") != status.PREPARED:
            return
        checkpoint.discard_staged(job_dir)
        try:
            status.write_status(job_dir, self.node.config.party, state=status.FAILED, reason=reason)
        except VflError as exc:
            log.warning("job %r: %s", job_id, exc)
        log.warning("job %r: prepared close rolled back: %s", job_id, reason)

    def run_lease_reaper(self, stop: threading.Event, interval: float = 1.0) -> threading.Thread:
        """A thread that closes expired passive jobs every `interval` seconds until `stop` is set."""
        def reap() -> None:
            while not stop.wait(interval):
                try:
                    self.expire_leases()
                except Exception:  # noqa: BLE001 - the reaper must outlive one job's trouble
                    log.exception("closing the jobs whose lease expired failed")
        thread = threading.Thread(target=reap, name="vfl-lease-reaper", daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------ lifecycle
    def job_dirs(self) -> list[Path]:
        root = self.node.config.jobs_dir
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def recover(self) -> list[str]:
        """At start-up: find the jobs this node left unfinished and carry them on. Returns their ids.

        Active jobs that were running or suspended resume from the last checkpoint every party holds (or set up
        again on their saved PSI alignment), or fail with the reason and close every party's side; a job that was
        committing finishes its commits. Passive jobs are reopened by their active party; one left prepared is
        rolled back unless its commit (or abort) arrives within a lease.
        """
        from vfl.job.spec import load_job_spec
        recovered = []
        for job_dir in self.job_dirs():
            found = status.read_status(job_dir)
            if not found or found.get("state") in status.FINAL:
                continue
            job_id = job_dir.name
            if found.get("role") == "passive":
                if found.get("state") == status.PREPARED:
                    with self._lock:
                        self._prepared_on_disk[job_id] = time.monotonic()
                elif found.get("state") == status.OPEN:
                    status.write_status(job_dir, self.node.config.party, state=status.INTERRUPTED,
                                        reason="this node restarted; its active party resumes the job")
                continue
            if found.get("role") != "active" or self.node.config.role != "active":
                continue
            try:
                spec = load_job_spec(job_dir / "job.yaml")
                self.start_active(spec, recovered=found, commit_only=found.get("state") == status.COMMITTING)
            except Exception as exc:  # noqa: BLE001 - one unreadable job must not keep the node from starting
                log.error("job %r cannot be recovered: %s", job_id, exc)
                try:
                    status.write_status(job_dir, self.node.config.party, state=status.FAILED,
                                        reason=f"cannot be recovered after a restart: {exc}")
                except VflError:
                    pass
                continue
            log.info("job %r (%s, stage %s) recovered after a restart", job_id, found.get("state"),
                     found.get("stage"))
            recovered.append(job_id)
        return recovered

    def drain(self, seconds: float) -> None:
        """SIGTERM: take no new work, suspend every running active job at its next step (each tells its peers and
        keeps its checkpoints, and resumes when the node starts again), wait up to `seconds` for them."""
        with self._lock:
            self.draining = True
            jobs = list(self.active_jobs.values())
            threads = [self.active_threads[j.spec.job_id] for j in jobs if j.spec.job_id in self.active_threads]
        for job in jobs:
            job.request_stop(status.SUSPENDED, f"the active node {self.node.config.party!r} is shutting down")
        deadline = time.monotonic() + seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in threads if t.is_alive()]
        if left:
            log.warning("jobs still running after %g s of draining (they resume from their last checkpoint when "
                        "the node starts again): %s", seconds, ", ".join(left))
        with self._lock:
            passive = list(self.passive_jobs.values())
        for job in passive:  # their active parties resume them once this node is back
            if job.state not in (JobState.CLOSED, JobState.PREPARED):
                try:
                    status.write_status(job.job_dir, self.node.config.party, state=status.INTERRUPTED,
                                        reason="this node shut down; its active party resumes the job")
                except VflError as exc:
                    log.warning("job %r: %s", job.spec.job_id, exc)

    def shutdown(self) -> None:
        """The node stops: drain (SIGTERM), then every passive job's key ends with it."""
        self.drain(self.node.config.timeouts.drain_seconds)
        with self._lock:
            jobs = list(self.passive_jobs.values())
        for job in jobs:
            try:
                job.release_key()
            except Exception:  # noqa: BLE001 - stopping anyway; the key holders end with the node's Ray connection
                log.warning("ending the key of job %r failed while stopping", job.spec.job_id, exc_info=True)
