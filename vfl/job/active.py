"""The active party's job runtime: drives PSI, set-up, training, evaluation and saving, step by step.

Every job runs exactly one PSI session (passive nodes refuse any other): intersection mode for train, predict
and psi jobs, cardinality mode for cardinality jobs, which end there.

Runs in its own thread at the active node. Every stage reports progress and per-epoch metrics as events,
which `vfl run` and the Python API show as progress bars.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np
import torch

from psi.errors import PsiError
from vfl.data import sealed
from vfl.data.atomic import atomic_write_text
from vfl.data.id_shape import note_for_active, parse_shape
from vfl.errors import (RECOVERABLE, Cancelled, ConfigError, DataError, JobFailed, PeerCallError, Unavailable,
                        VflError, shorten)
from vfl.job import checkpoint, status
from vfl.job.caps import check_parameters
from vfl.job.events import EventLog
from vfl.job.ledger import JOURNAL, WireLedger
from vfl.job.network import PeerNetwork
from vfl.job.lineage import record_job_lineage
from vfl.job.party_data import (align, aligned_table, alignment_size, audit_for_job, has_alignment,
                                prepare_dataset, release_tables, save_alignment)
from vfl.job.peer import ActivePeer
from vfl.job.private_random import for_node
from vfl.job.spec import EVAL_BATCH_ROWS, JobSpec, interactive_layout
from vfl.job.split import batch_order, effective_batch_size
from vfl.job.stopping import Stopping
from vfl.job.timing import Timer
from vfl.models.custom import build_bottom, check_saved_module, load_part, resolve_factory
from vfl.models.active_model import ActiveModel
from vfl.models.tasks import make_task
from vfl.protocol.messages import AFTER_PSI, RenewLease
from vfl.protocol.schemes import scheme_for

log = logging.getLogger("vfl.active")

RESULT = "result.json"
#: reconnections in a row, without a completed stage or epoch between them, after which a job fails
MAX_RESUMES = 3
T = TypeVar("T")


class PsiCancelled(PsiError):
    """Raised in a cancelled job's PSI progress report: the session aborts at once, and its peers hear why."""

    grpc_code = "CANCELLED"


class JobStopped(Exception):
    """The job was asked to stop: cancelled, or suspended because this node is shutting down (SIGTERM)."""

    def __init__(self, outcome: str, reason: str):
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


def inherit_model_settings(spec: JobSpec, trained_spec_path: Path) -> JobSpec:
    """A prediction job uses the architecture, crypto settings and seeds of the job that trained the model."""
    import dataclasses
    from vfl.job.spec import load_job_spec
    if not trained_spec_path.exists():
        raise DataError(f"model_job: no trained job at {trained_spec_path.parent}")
    trained = load_job_spec(trained_spec_path)
    if {p.name for p in trained.parties} != {p.name for p in spec.parties} or trained.active != spec.active:
        raise ConfigError(f"parties: prediction parties {[p.name for p in spec.parties]} differ from the "
                          f"trained model's {[p.name for p in trained.parties]}")
    parties = tuple(dataclasses.replace(p, bottom=trained.party(p.name).bottom) for p in spec.parties)
    return dataclasses.replace(spec, task=trained.task, parties=parties, interactive_out=trained.interactive_out,
                               top=trained.top, crypto=trained.crypto, train=trained.train, split=trained.split)


class ActiveJob:
    """The job at its active party. `network` reaches the passive parties: the node's gRPC links and PSI, or, in
    tests, runtimes in this process (tests/job/local.py)."""

    def __init__(self, node, spec: JobSpec, events: EventLog, network: PeerNetwork, defense=None,
                 recovered: dict | None = None):
        self.node = node
        if spec.kind == "predict":
            spec = inherit_model_settings(spec, node.config.job_dir(spec.model_job) / "job.yaml")
        self.spec = spec
        self.events = events
        self.job_dir: Path = node.config.job_dir(spec.job_id)
        # the job's status as a restarted node found it on disk (JobRegistry.recover), None for a new job
        self.recovered = recovered
        # one ledger across resumes and restarts of this node (vfl/job/ledger.py)
        self.ledger = WireLedger(self.job_dir / JOURNAL, spec.active)
        self.timer = Timer()
        self.network = network
        self.links = {p.name: ActivePeer(p.name, network.link(p.name), spec, self.ledger, self.timer,
                                         node.compute) for p in spec.passives}
        self.own_key = None  # this party's key for the job, from set-up on; closed when the job ends
        # two threads per link: with the pipeline, a batch's call to a peer runs while the last one is decrypted
        self.pool = ThreadPoolExecutor(max_workers=max(1, 2 * len(self.links)),
                                       thread_name_prefix=f"{spec.job_id}-link")
        self.pipeline = node.config.compute.pipeline
        self.pipe = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{spec.job_id}-pipe")
        self.metrics_history: list[dict] = []
        self.defense = defense
        self.epochs_started = 0  # for the DP accountant: a resumed epoch releases its gradients again
        self.bottom_factory = None  # this party's own bottom model factory, if the job names one
        self.bottom_factory_path = None
        self._psi_progress_at = 0.0
        self.warnings: list[str] = []  # for the result: e.g. why PSI found few common IDs
        self.batch_size = spec.train.max_batch_size  # training jobs size it to the table at set-up
        self.stage = "open"  # the stage of the last event: a failure names it
        self.committed = False  # this party's own commit began (the close's second phase)
        self.resumes = 1 if recovered is not None else 0  # reconnections so far (a restart of this node is one)
        self.final_epoch = spec.train.epochs  # the epoch whose checkpoint every party's trained state is
        self._resumes_in_a_row = 0  # since the last completed stage or epoch (MAX_RESUMES)
        self.saved: dict | None = None  # a prediction job's saved model part
        self._stop: JobStopped | None = None  # set by request_stop: the job stops at its next step
        self._lease_seconds = 0.0  # the shortest lease the passive parties hold the job under

    # ------------------------------------------------------------------ helpers
    def emit(self, kind: str, message: str = "", **fields) -> None:
        self.stage = fields.get("stage") or self.stage
        self.events.emit(kind, message, **fields)
        if kind in ("log", "epoch", "result", "error"):
            log.info("[%s] %s", self.spec.job_id, message)

    def each_link(self, fn):
        """Run fn(link) for every passive party concurrently; return results in party order."""
        futures = {name: self.pool.submit(fn, link) for name, link in self.links.items()}
        return [futures[name].result() for name in self.links]

    def request_stop(self, outcome: str, reason: str) -> None:
        """Stop at the next step (or stage) and close every party's side as `outcome` (cancelled, suspended)."""
        if self._stop is None:
            self._stop = JobStopped(outcome, reason)

    def _check_stop(self) -> None:
        if self._stop is not None:
            raise self._stop

    @contextlib.contextmanager
    def _renewing_leases(self) -> Iterator[None]:
        """Keep the job's lease at every passive party while the job runs here: a link that made no call for a
        third of the lease (the job waits for another peer, runs PSI, or works locally) sends a RenewLease. A passive
        party closes a job whose active party is gone; a busy job's calls renew the lease by themselves."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(1.0):
                if not self._lease_seconds:
                    continue
                for name, link in self.links.items():
                    if time.monotonic() - link.last_call < self._lease_seconds / 3:
                        continue
                    link.last_call = time.monotonic()
                    try:  # not through ActivePeer.call: a renewal is no step of the job's timing or ledger
                        link.link.call(RenewLease(job_id=self.spec.job_id))
                    except PeerCallError as exc:
                        log.debug("job %s: renewing its lease at %s: %s", self.spec.job_id, name, exc)
        thread = threading.Thread(target=renew, name=f"{self.spec.job_id}-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()

    def _note_leases(self, replies) -> None:
        leases = [r.lease_seconds for r in replies if r.lease_seconds > 0]
        if leases:
            self._lease_seconds = min(leases)

    # ------------------------------------------------------------------ stages
    def run(self) -> dict:
        spec = self.spec
        if spec.active != self.node.config.party:
            raise ConfigError(f"active: job names {spec.active!r} as active party, but this node is "
                              f"{self.node.config.party!r}")
        t0 = time.time()
        try:
            # inside the error handling: an unwritable jobs_dir must fail the job with an event, not end its
            # thread silently while the submitter waits
            if self.recovered is None:
                atomic_write_text(self.job_dir / "job.yaml", spec.to_yaml(), "job spec", spec.active)
            status.write_status(self.job_dir, spec.active, job_id=spec.job_id, kind=spec.kind, role="active",
                                active=spec.active, state=status.RUNNING, stage=self.stage)
            with self._renewing_leases():
                result = self._stages() if self.recovered is None else self._recovered_stages()
                if self.warnings:
                    result["warnings"] = self.warnings
                # where this party's heavy work ran (on Ray: its nodes and how many tasks each has run for it)
                result["compute"] = self.node.compute.describe()
                result["seconds"] = round(time.time() - t0, 2)
                self.stage = "close"
                self._close_succeeded(result)
            self.emit("result", f"job {spec.job_id} finished in {result['seconds']} s", stage="done",
                      metrics=result, done=True)
            return result
        except JobStopped as stop:
            self._close_unsuccessful(stop.outcome, stop.reason, f"{stop.outcome} at the active party's stage "
                                                                f"{self.stage}: {stop.reason}")
            self.emit(stop.outcome, self._stopped_message(stop), stage=self.stage, failed=True, done=True)
            raise (Cancelled if stop.outcome == status.CANCELLED else Unavailable)(stop.reason) from None
        except Exception as exc:
            message = str(exc) if isinstance(exc, VflError) else shorten(f"{type(exc).__name__}: {exc}")
            message = f"{message} (stage {self.stage})"
            log.exception("job %s failed", spec.job_id) if not isinstance(exc, VflError) else None
            self._close_unsuccessful(status.FAILED, message, self._reason_for_peers(exc))
            self.emit("error", message, stage=self.stage, failed=True, done=True)
            raise
        finally:
            self.pool.shutdown(wait=False)
            self.pipe.shutdown(wait=False)
            self.ledger.close()
            self._close_key()

    def run_commit(self) -> dict:
        """A job this node was committing when it stopped: finish the commit at every party, or fail it everywhere
        (a party that rolled back meanwhile, its lease having run out, makes every party roll back)."""
        try:
            self.emit("log", f"job {self.spec.job_id}: this node restarted while committing the job; finishing the "
                             "commit at every party", stage="close")
            self.finish_commit()
            result = json.loads((self.job_dir / RESULT).read_text())
            self.emit("result", f"job {self.spec.job_id} committed after a restart", stage="done", metrics=result,
                      done=True)
            return result
        except Exception as exc:
            message = f"{exc if isinstance(exc, VflError) else shorten(repr(exc))} (stage close)"
            self._close_unsuccessful(status.FAILED, message, self._reason_for_peers(exc))
            self.emit("error", message, stage="close", failed=True, done=True)
            raise
        finally:
            self.pool.shutdown(wait=False)
            self.pipe.shutdown(wait=False)
            self.ledger.close()

    def _stopped_message(self, stop: JobStopped) -> str:
        job = self.spec.job_id
        if stop.outcome == status.CANCELLED:
            return f"job {job} cancelled at stage {self.stage} ({stop.reason}); every party closed it as cancelled"
        last = checkpoint.last_checkpoint(self.job_dir)
        where = f"from its checkpoint of epoch {last}" if self.spec.kind == "train" and last >= 0 else \
            "from its saved PSI alignment" if has_alignment(self.job_dir) else "if its PSI had finished"
        return (f"job {job} suspended at stage {self.stage}: {stop.reason}; it resumes {where} when the node "
                f"starts again (follow it then with: vfl attach {job})")

    def _stages(self) -> dict:
        """A new job, stage by stage."""
        spec = self.spec
        self._open()
        if spec.kind == "cardinality":  # one cardinality session, and the job is done: no IDs, no rows
            return {"job_id": spec.job_id, "intersection": self._cardinality()}
        self._psi()
        self._check_stop()
        if spec.kind == "psi":
            return self._psi_result()
        self.stage = "setup"
        self._setup()
        # a set-up lost midway is done again by the resume itself
        self._resilient(lambda: self._setup_links(restored=self.saved["links"] if self.saved else None), AFTER_PSI,
                        again=False)
        self._setup_done()
        self.stage = spec.kind
        return self._train() if spec.kind == "train" else self._predict()

    def _recovered_stages(self) -> dict:
        """A job this node was running when it stopped (crash, SIGTERM): it continues from the last state every
        party holds, or fails with the reason (PSI runs once per job, so a job stopped before its alignment cannot)."""
        spec = self.spec
        before = self.recovered.get("stage") or "open"
        self.emit("log", f"job {spec.job_id}: this node restarted during stage {before}; resuming it", stage=before)
        self._load_own()
        if spec.kind == "cardinality" or not has_alignment(self.job_dir):
            raise JobFailed(f"the active node stopped during stage {before}, before the job's PSI alignment was "
                            "saved; PSI runs once per job, so the job cannot resume: submit it again under a new "
                            "job id")
        if spec.kind == "psi":
            self._reconnect(AFTER_PSI)
            return self._psi_result()
        self.stage = "setup"
        self._setup()
        own = checkpoint.last_checkpoint(self.job_dir) if spec.kind == "train" else -1
        epoch = self._reconnect(own if own >= 0 else AFTER_PSI)
        self._setup_done()
        self.epochs_started = max(epoch, 0) + 1  # the epoch the stop interrupted released its gradients too
        self.stage = spec.kind
        if spec.kind == "predict":
            return self._predict()
        if epoch < 0:
            return self._train()
        self.emit("log", f"resumed from epoch {epoch} with fresh keys", stage="train")
        return self._train(start=epoch)

    def _psi_result(self) -> dict:
        return {"job_id": self.spec.job_id, "intersection": alignment_size(self.job_dir),
                "aligned_ids": str(self.job_dir / "aligned_ids.json")}

    # ------------------------------------------------------------------ resuming after a lost peer
    def _resilient(self, attempt: Callable[[], T], epoch: int, again: bool = True) -> T | None:
        """`attempt()`; if a peer is lost meanwhile (killed, restarted, unreachable), wait for it, resume every party
        at `epoch` (a checkpoint, or AFTER_PSI: set up afresh on the saved alignment) and try again (unless not
        `again`: the resume did what the attempt was for)."""
        while True:
            try:
                done = attempt()
                self._resumes_in_a_row = 0
                return done
            except PeerCallError as exc:
                self._lost(exc, epoch)
                if not again:
                    return None

    def _lost(self, exc: PeerCallError, epoch: int) -> int:
        """A call failed: resume every party at `epoch` and return the epoch resumed from, or re-raise."""
        resumable = self.spec.kind != "cardinality" and (epoch < 0 or self.spec.train.checkpoint)
        if not exc.recoverable or self._resumes_in_a_row >= MAX_RESUMES or not resumable:
            raise exc
        self.resumes += 1
        self._resumes_in_a_row += 1
        where = f"from epoch {epoch}" if epoch >= 0 else f"at stage {self.stage} on the saved PSI alignment"
        self.emit("log", f"{exc}; waiting up to {self.node.config.timeouts.resume_wait_seconds:g} s for "
                         f"{exc.peer} to resume {where}", stage=self.stage)
        done = self._reconnect(epoch)
        self.emit("log", f"resumed from epoch {done} with fresh keys" if done >= 0 else
                  f"resumed at stage {self.stage} with fresh keys", stage=self.stage)
        return done

    def _reopen(self, epoch: int) -> int:
        """Reopen the job at every passive party as a resume at `epoch`, waiting for each to come back; a party
        without that checkpoint makes every party resume at its last one (if this party holds it too)."""
        spec_yaml = self.spec.for_peers().to_yaml()  # the positive class stays here
        what = f"resume from epoch {epoch}" if epoch >= 0 else f"resume at stage {self.stage}"
        replies = []
        for link in self.links.values():
            replies.append(self._until_back(link, lambda link=link: link.open(spec_yaml, resume_epoch=epoch), what))
        self._note_leases(replies)
        if epoch >= 0:
            lowest = min(r.resumable_epoch for r in replies)
            if lowest < epoch:
                name = [n for n, r in zip(self.links, replies) if r.resumable_epoch == lowest][0]
                if lowest < 0 or not checkpoint.checkpoint_path(self.job_dir, lowest).exists():
                    raise JobFailed(f"{name} has no checkpoint of epoch {epoch}; cannot resume")
                return self._reopen(lowest)
        return epoch

    def _reconnect(self, epoch: int, keep_history: bool = False) -> int:
        """Reopen every passive party at `epoch`, restore this party's state from the same point, set up again.
        `keep_history`: the metrics of later epochs stay (early stopping going back to its best epoch)."""
        epoch = self._reopen(epoch)
        if self.spec.kind in ("psi", "cardinality"):
            return epoch
        restored = self.saved["links"] if self.saved else None
        if self.spec.kind == "train" and epoch >= 0:
            state = checkpoint.load_checkpoint(self.job_dir, epoch, self.spec.active)
            self.model.load_state_dict(state["model"])
            for opt, opt_state in zip(self.optimizers, state["optimizers"]):
                opt.load_state_dict(opt_state)
            if not keep_history:
                self.metrics_history[:] = state["history"]
            restored = state["links"]
            self.final_epoch = epoch
        self._setup_links(restored=restored)
        return epoch

    def _close_key(self) -> None:
        """End the job's key (on Ray, its key holders end with it)."""
        key, self.own_key = self.own_key, None
        if key is not None:
            key.close()

    def _open(self) -> None:
        spec = self.spec
        self.emit("log", f"opening job {spec.job_id} at {', '.join(self.links)}", stage="open")
        self._load_own()
        spec_yaml = spec.for_peers().to_yaml()  # the positive class stays here
        # a lost reply is asked again (the passive reopens a job it has not run PSI for)
        replies = self.each_link(lambda link: self._until_back(link, lambda: link.open(spec_yaml), "open the job"))
        self._note_leases(replies)
        self.peer_rows = {name: reply.rows for name, reply in zip(self.links, replies)}
        self.peer_shapes = {name: parse_shape(reply.id_shape, name) for name, reply in zip(self.links, replies)}
        for name, reply in zip(self.links, replies):
            self.emit("log", f"{name}: {reply.rows} rows, {reply.feature_dim} features", stage="open")

    def _load_own(self) -> None:
        """This party's own table and bottom model, checked before any peer is contacted."""
        spec = self.spec
        dataset = self.dataset = self.node.dataset(spec.party(spec.active).dataset)
        if spec.kind == "train" and not dataset.label:
            raise DataError(f"dataset {dataset.name!r} of active party {spec.active!r} declares no label column")
        audit_for_job(dataset, self.job_dir, self.node.config.policy.allow_pii_columns,
                      uses_features=spec.kind in ("train", "predict"))
        schema = None
        if spec.kind == "predict":
            from vfl.data import Schema
            schema = Schema.from_json(sealed.read_text(self._model_dir() / checkpoint.SCHEMA))
        # a PSI-only job never reads the label, so it must not refuse one that does not fit spec.task; it reads the
        # IDs alone. The table goes to the job's folder in chunks (vfl/job/party_data.py), never whole into memory.
        self.table = prepare_dataset(dataset, self.job_dir, spec.task, schema=schema,
                                     with_label=spec.kind in ("train", "predict"), positive_class=spec.positive_class,
                                     ids_only=spec.kind in ("psi", "cardinality"), party=spec.active)
        classes = max(1, len(self.table.schema.label_classes or ())) if spec.task == "multiclass" else 1
        check_parameters(spec, self.node.config.policy, spec.active, self.table.feature_dim, classes)
        # This node's own bottom model, if the job names one: resolved from this node's config only, and
        # checked by a dry forward now, before any peer is contacted.
        own = spec.party(spec.active).bottom
        models = self.node.models()
        self.bottom_factory_path = models.get(own.module) if own.module else None
        self.bottom_factory = resolve_factory(models, own.module, spec.active)
        if own.module is not None and self.table.feature_dim > 0:
            build_bottom(own, self.table.feature_dim, self.bottom_factory, spec.active)

    def _psi_progress(self, stage: str, done: int, total: int) -> None:
        if self._stop is not None and self._stop.outcome == status.CANCELLED:
            # a cancel ends the session now, telling its peers why (a large PSI may run for many minutes); a drain
            # lets it finish if it can, since a job stopped before its alignment is saved cannot resume
            raise PsiCancelled(f"job {self.spec.job_id} was {self._stop.reason}")
        now = time.time()
        if now - self._psi_progress_at > 0.5 or done >= total:  # at most two events a second
            self._psi_progress_at = now
            self.emit("progress", stage="psi", progress=done / max(total, 1),
                      metrics={"psi_stage": stage, "done": done, "total": total})

    def _run_psi(self, ids: list[str]):
        """The job's one PSI session with all passives, in the mode and canonicalization its spec fixes.

        A session that fails on the way (a peer unreachable, restarted, a cut link) is tried again, as a new
        session, until timeouts.resume_wait_seconds: a passive party refuses it if the first one had begun there
        (PSI runs once per job, vfl/job/psi_once.py), so a retry never gives a second look at its IDs; the job
        then fails with that reason.
        """
        wait = self.node.config.timeouts.resume_wait_seconds
        deadline = time.time() + wait
        while True:
            try:
                return self.network.run_psi(self.spec, ids, self.ledger, self._psi_progress)
            except PsiError as exc:
                self._check_stop()  # cancelled meanwhile (the session was ended for it): no retry
                code = getattr(exc, "code", None) or exc.grpc_code
                if code not in RECOVERABLE or time.time() > deadline:
                    raise
                self.emit("log", f"PSI session failed ({exc}); trying again for up to {wait:g} s (a passive "
                                 "party refuses a second session if the first had begun there)", stage="psi")
                time.sleep(1.0)
                # a passive node that restarted meanwhile has forgotten the job: open it again (refused, naming
                # the first session, if that session had begun there)
                spec_yaml = self.spec.to_yaml()
                self.each_link(lambda link: self._until_back(link, lambda: link.open(spec_yaml), "open the job"))

    def _psi(self) -> None:
        self.emit("log", "PSI: aligning rows", stage="psi")
        result = self._run_psi(self._psi_ids())
        try:
            save_alignment(self.job_dir, self.table, result, self._canon(), self.spec.active)
        finally:
            result.close()
        common = result.size
        self.emit("log", f"PSI: {common} common IDs (active party has {len(self.table)})", stage="psi",
                  metrics={"intersection": common})
        note = self._id_note(common)
        if common == 0 and self.spec.kind != "psi":   # a PSI-only job reports 0; the others have no rows to use
            what = "nothing to train on" if self.spec.kind == "train" else "nothing to predict"
            raise DataError(f"PSI found no common IDs between the parties: {what}" + (f"; {note}" if note else ""))
        self._warn_ids(common, note)

    def _psi_ids(self):
        """This party's IDs as PSI reads them: from the job's table on disk, a chunk at a time; PSI's own temporary
        files (encrypted, psi.core.spill) go to the job's folder too."""
        return self.table.id_source(self.job_dir)

    def _canon(self):
        from psi.core.hashing import Canonicalization
        return Canonicalization(self.spec.psi.strip, self.spec.psi.lowercase)

    def _cardinality(self) -> int:
        self.emit("log", "PSI (cardinality): counting common IDs", stage="psi")
        size = self._run_psi(self._psi_ids()).size
        self.emit("log", f"PSI (cardinality): {size} common IDs (active party has {len(self.table)})", stage="psi",
                  metrics={"intersection": size})
        self._warn_ids(size, self._id_note(size))
        return size

    def _id_note(self, common: int) -> str | None:
        """Why few or no IDs are common, if the parties' coarse ID shapes differ (vfl/data/id_shape.py)."""
        psi = self.spec.psi
        return note_for_active(common, self.spec.active, self.table.ids, psi.strip, psi.lowercase, self.peer_rows,
                               self.peer_shapes)

    def _warn_ids(self, common: int, note: str | None) -> None:
        if note:
            self.warnings.append(f"PSI found {common} common IDs: {note}")
            self.emit("log", f"warning: {self.warnings[-1]}", stage="psi")

    def _setup(self) -> None:
        """This party's aligned rows, task and model part (the links are set up by `_setup_links`)."""
        spec = self.spec
        saved = self.saved = checkpoint.load_torch(self._model_dir() / checkpoint.MODEL_PART) \
            if spec.kind == "predict" else None
        aligned = aligned_table(self.job_dir, self.table, self._canon(), spec.active)
        self.data, self.standardizer = align(aligned, spec, standardizer=saved["standardizer"] if saved else None,
                                             ids_in_memory=spec.kind == "train")
        labels = self.data.label
        if spec.kind == "train":
            num_classes = len(self.table.schema.label_classes) if spec.task == "multiclass" else None
            self.task = make_task(spec.task, labels, num_classes)
        else:
            self.task = make_task(spec.task, None, saved["num_classes"])
        if saved is not None:
            check_saved_module(saved, spec.party(spec.active).bottom.module, spec.model_job, spec.active)
        self.private = for_node(self.node.config, spec.active)
        self.model = ActiveModel.for_spec(spec, self.data.feature_dim, self.task.num_outputs, self.private,
                                          self.bottom_factory)
        self.optimizers = self.model.optimizers(spec)
        if saved:
            load_part(self.model, saved["model"], spec.party(spec.active).bottom, spec.model_job, spec.active)

    def _setup_done(self) -> None:
        if self.data.split is None:   # a prediction uses every aligned row, in order
            self.emit("log", f"set up: {len(self.data.ids)} aligned rows to predict", stage="setup",
                      metrics={"rows": len(self.data.ids)})
        else:
            self.emit("log", f"set up: split {self.data.split.sizes()}", stage="setup",
                      metrics={"split": self.data.split.sizes()})
        if self.spec.kind == "train":
            self._size_batches()

    def _size_batches(self) -> None:
        """The training batch for this table (vfl.job.split.effective_batch_size), and a warning when an epoch is
        a single batch: one step per epoch rarely trains a model in the few epochs a job runs."""
        train_rows = len(self.data.split.train)
        self.batch_size = effective_batch_size(self.spec.train.batch_size, train_rows)
        steps = -(-train_rows // self.batch_size)
        chosen = "train.batch_size" if self.spec.train.batch_size is not None else "sized to the table"
        self.emit("log", f"training batches of {self.batch_size} rows ({chosen}): {steps} steps per epoch over "
                         f"{train_rows} training rows", stage="setup")
        if steps == 1:
            self.warnings.append(f"an epoch is a single batch: train.batch_size {self.batch_size} covers all "
                                 f"{train_rows} training rows, so each epoch takes one optimizer step; leave "
                                 "train.batch_size out (batches sized to the table) or lower it")
            self.emit("log", f"warning: {self.warnings[-1]}", stage="setup")

    def _setup_links(self, restored: dict | None) -> None:
        """Fresh keys, then Setup with every passive party (restored shares on resume or prediction)."""
        spec = self.spec
        c = spec.crypto
        scheme = scheme_for(c.mode)
        if scheme.encrypted:
            self.emit("log", f"generating a fresh {c.key_bits}-bit {c.mode} key", stage="setup")
        self._close_key()  # a set-up again (resume) draws a fresh key: the old one ends here
        own_key = self.own_key = scheme.new_active_key(c.key_bits, self.node.compute)
        rows = len(self.data.ids)

        def setup_link(link: ActivePeer) -> None:
            layout = interactive_layout(spec, spec.party(link.peer), spec.train.seed)
            state = copy.deepcopy(restored[link.peer]) if restored else None
            # one stream per link: the links set up concurrently, and each half must not depend on the order
            rng = self.private.numpy(f"interactive-half:{link.peer}")
            link.setup(layout, own_key, rows, spec.interactive_init_std, rng, restored=state)
        self.each_link(setup_link)
        if self.pipeline and self.node.config.compute.backend == "local":
            # the randomness of the next step's encryptions is computed while this party waits, by a thread of this
            # process: on Ray that work stays on the cluster's tasks and key holders (docs/scale.md)
            step_rows = max(spec.train.max_batch_size, EVAL_BATCH_ROWS)
            scheme.keep_ready(own_key, sum(link.half.keep_ready(step_rows) for link in self.links.values()))

    # ------------------------------------------------------------------ training
    def _forward(self, rows: np.ndarray, phase: str, epoch: int, step: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        zs = self.each_link(lambda link: link.forward(rows, phase, epoch, step))
        return self._head(rows, zs, train=phase == "train")

    def _head(self, rows: np.ndarray, zs: list[torch.Tensor], train: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if train:
            zs = [z.requires_grad_(True) for z in zs]
        z = sum(zs)
        x = torch.from_numpy(self.data.features[rows])
        own = self.model.own_z(x)
        if own is not None:
            z = z + own
        return self.model.head(z), zs

    def _train_step(self, rows: np.ndarray, epoch: int, step: int) -> float:
        self.model.train()
        zs = self.each_link(lambda link: link.forward(rows, "train", epoch, step))
        with self.timer.measure("torch"):
            out, zs = self._head(rows, zs, train=True)
            target = torch.from_numpy(np.asarray(self.data.label[rows]))
            loss = self.task.loss(out, target)
            for opt in self.optimizers:
                opt.zero_grad()
            loss.backward()
        delta = zs[0].grad.detach().numpy().astype(np.float64)  # dL/dz, identical for every passive party
        per_example = delta * len(rows)
        # The defense changes what passive parties can observe: their input gradients. The weight gradient
        # stays exact; it only ever exists as masked shares and encrypted per-example gradients.
        released = per_example
        if self.defense is not None:
            released = self.defense.apply(per_example, self.data.label[rows], step=(epoch, step))
        self.each_link(lambda link: link.backward(per_example, epoch, step, released=released))
        with self.timer.measure("torch"):
            for opt in self.optimizers:
                opt.step()
        return float(loss.detach())

    def _train(self, start: int = 0) -> dict:
        """Epoch loop with a checkpoint after every epoch at every party (and one before the first).

        If a passive node fails (killed, restarted, unreachable) mid-epoch, at an epoch's checkpoint or during the
        test evaluation, the job waits for it, rolls every party back to the last completed epoch and carries on
        from there: nothing completed is lost. `start` > 0: a job resumed after a restart of this node.
        """
        spec = self.spec
        split = self.data.split
        epochs = spec.train.epochs
        stopping = Stopping.of(spec.train.early_stopping, spec.task) if spec.train.early_stopping else None
        completed = start
        if start == 0:
            self._resilient(lambda: self._end_epoch(0), AFTER_PSI)
        # a job resumed after a restart may have stopped early already
        stopped = start > 0 and stopping is not None and stopping.should_stop(self.metrics_history)
        while completed < epochs and not stopped:
            self._check_stop()
            try:
                self._run_epoch(completed)
                self._end_epoch(completed + 1)
            except PeerCallError as exc:
                completed = self._lost(exc, completed)
                continue
            completed += 1
            self._resumes_in_a_row = 0
            metrics = self.metrics_history[-1]
            self.emit("epoch", f"epoch {completed}/{epochs}: " +
                      ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
                      stage="train", metrics=metrics)
            if stopping is not None and stopping.should_stop(self.metrics_history):
                break
        result = {"job_id": spec.job_id, "task": spec.task, "batch_size": self.batch_size, "epochs_run": completed}
        self.final_epoch = completed  # the checkpoint of the state every party holds now (a resume goes back to it)
        if stopping is not None:
            result["early_stopping"] = self._keep_best_epoch(stopping, completed)
        self.stage = "evaluate"
        test, test_prediction = {}, None
        if len(split.test):
            test_prediction = self._resilient(lambda: self.predict_rows(split.test, "eval", epochs), self.final_epoch)
            test = self.task.metrics(test_prediction, np.asarray(self.data.label[split.test]))
        if spec.privacy.attacks and spec.task != "regression" and len(split.test):
            # needs the passive parties, so before closing
            self.membership = self._resilient(self._membership_auc, self.final_epoch)
        self.emit("log", "test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()), stage="evaluate",
                  metrics=test)
        if spec.task == "binary":
            result["positive_class"] = self.table.schema.label_classes[1]
        result.update({"test": test, "history": self.metrics_history, "split": split.sizes(),
                       "intersection": int(len(self.data.ids)), "resumes": self.resumes,
                       "model_dir": str(self._own_model_dir())})
        result["plots"] = self._plots(test_prediction, result.get("early_stopping", {}).get("kept_epoch"))
        return result

    def _keep_best_epoch(self, stopping: Stopping, completed: int) -> dict:
        """Go back to the best epoch at every party: each passive party is reopened at that epoch's checkpoint (the
        resume path: its bottom model and its share of the interactive weight), and so is this party's part."""
        kept = stopping.best_epoch(self.metrics_history)
        best = stopping.value(next(row for row in self.metrics_history if row["epoch"] == kept))
        stopped = completed < self.spec.train.epochs
        why = (f"stopped after epoch {completed}: {stopping.key} did not improve for {stopping.patience} epochs"
               if stopped else f"all {completed} epochs ran")
        self.emit("log", f"early stopping: {why}; keeping epoch {kept} ({stopping.key}={best:.4g})", stage="train")
        if kept != completed:
            self._go_back_to(kept)
        return {"metric": stopping.key, "kept_epoch": kept, "best_value": best, "stopped_early": stopped}

    def _plots(self, test_prediction: np.ndarray | None, kept_epoch: int | None) -> dict[str, str]:
        """learning_curves.png, and roc.png for a binary task whose test split holds both classes (vfl/job/plots.py).

        A plot that cannot be drawn is a warning: the trained model and its metrics are what the job is for."""
        from vfl.job import plots
        out: dict[str, str] = {}
        try:
            # staged, like the model: visible once every party committed
            curves, roc = self.job_dir / plots.LEARNING_CURVES, self.job_dir / plots.ROC
            plots.write_learning_curves(self.metrics_history, checkpoint.staged(self.job_dir, curves), kept_epoch)
            out["learning_curves"] = str(curves)
            if self.spec.task == "binary" and test_prediction is not None:
                labels = np.asarray(self.data.label[self.data.split.test])
                if len(np.unique(labels)) == 2:
                    plots.write_roc(labels, test_prediction, checkpoint.staged(self.job_dir, roc),
                                    self.table.schema.label_classes[1])
                    out["roc"] = str(roc)
        except Exception as exc:  # noqa: BLE001 - a plotting failure must not fail a trained job
            self.warnings.append(shorten(f"plots not written: {type(exc).__name__}: {exc}"))
            self.emit("log", f"warning: {self.warnings[-1]}", stage="evaluate")
        return out

    def _run_epoch(self, epoch: int) -> None:
        self.epochs_started += 1
        spec = self.spec
        split = self.data.split
        batches = batch_order(self.data.ids, split.train, self.batch_size, epoch, spec.train.seed)
        losses = []
        t0 = time.time()
        for step, rows in enumerate(batches):
            self._check_stop()
            losses.append(self._train_step(rows, epoch, step))
            self.emit("progress", stage="train", progress=(step + 1) / len(batches),
                      metrics={"epoch": epoch + 1, "epochs": spec.train.epochs, "step": step + 1,
                               "steps": len(batches), "loss": losses[-1]})
        seconds = time.time() - t0
        metrics = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(seconds, 2),
                   "rows_per_second": round(len(split.train) / max(seconds, 1e-9), 1)}
        if len(split.validation):
            metrics.update({f"validation_{k}": v for k, v in self.evaluate(split.validation, epoch).items()})
        self.metrics_history.append(metrics)

    def _end_epoch(self, completed: int) -> None:
        checkpoint = self.spec.train.checkpoint
        if checkpoint:
            self._checkpoint(completed)
        self.each_link(lambda link: link.end_epoch(completed, checkpoint))

    def _go_back_to(self, epoch: int) -> None:
        """Every party's parameters as they were after `epoch` (early stopping); the history stays whole."""
        self._resilient(lambda: self._reconnect(epoch, keep_history=True), epoch, again=False)
        self.final_epoch = epoch
        self.emit("log", f"every party is back at epoch {epoch} (fresh keys)", stage="train")

    def predict_rows(self, positions: np.ndarray, phase: str, epoch: int) -> np.ndarray:
        batches = (positions[start:start + EVAL_BATCH_ROWS] for start in range(0, len(positions), EVAL_BATCH_ROWS))
        outputs = [prediction for _, _, prediction in self.predict_batches(batches, phase, epoch)]
        return np.concatenate(outputs) if outputs else np.zeros(0)

    def predict_batches(self, batches: Iterable[np.ndarray], phase: str,
                        epoch: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(step, rows, prediction) of each batch of rows, in order.

        Pipelined (node config compute.pipeline): the next batch's forward call goes out as soon as the last one's
        reply is in, and runs at the passive parties while this party decrypts that reply. The calls stay one at a
        time and in order, with the same messages; the weights do not change between evaluation batches, so the
        predictions are the same."""
        self.model.eval()
        with torch.no_grad():
            if not self.pipeline:
                for i, rows in enumerate(batches):
                    self._check_stop()
                    out, _ = self._forward(rows, phase, epoch, i)
                    yield i, rows, self.task.predict(out)
                return
            numbered = enumerate(batches)
            ahead = self._forward_call(next(numbered, None), phase, epoch)
            while ahead is not None:
                i, rows, replies = ahead
                replies = replies.result()
                self._check_stop()
                ahead = self._forward_call(next(numbered, None), phase, epoch)
                zs = self.each_link(lambda link: link.decode_forward(replies[link.peer], rows, phase))
                out, _ = self._head(rows, zs, train=False)
                yield i, rows, self.task.predict(out)

    def _forward_call(self, numbered, phase: str, epoch: int):
        """Start the forward calls of one evaluation batch to every passive party: (step, rows, future of replies)."""
        if numbered is None:
            return None
        i, rows = numbered

        def call() -> dict:
            replies = self.each_link(lambda link: link.request_forward(rows, phase, epoch, i))
            return dict(zip(self.links, replies))
        return i, rows, self.pipe.submit(call)

    def evaluate(self, positions: np.ndarray, epoch: int) -> dict[str, float]:
        prediction = self.predict_rows(positions, "eval", epoch)
        return self.task.metrics(prediction, np.asarray(self.data.label[positions]))

    # ------------------------------------------------------------------ prediction job
    def _predict(self) -> dict:
        """Predictions for every aligned row, batch by batch, each batch's rows appended to predictions.csv as it is
        decrypted: the node holds one batch of rows whatever the table's length (an evaluation with labels also
        keeps each row's prediction, for the metrics)."""
        out = self.job_dir / "predictions.csv"  # staged until the job commits
        labelled = self.data.label is not None and len(self.data.label) > 0
        kept: list[np.ndarray] = []
        rows = self._resilient(lambda: self._write_predictions(checkpoint.staged(self.job_dir, out),
                                                               kept if labelled else None), AFTER_PSI)
        unmatched = len(self.table) - rows
        if unmatched:
            self.emit("log", f"{unmatched} of the {len(self.table)} rows of dataset {self.dataset.name!r} have no "
                             "prediction: their IDs are not at every party (PSI found no match)", stage="predict")
        result = {"job_id": self.spec.job_id, "predictions": str(out), "rows": rows,
                  "id_column": self.dataset.id_column, "unmatched_rows": unmatched}
        if self.spec.task == "binary":
            result["positive_class"] = self.table.schema.label_classes[1]
        if labelled:
            result["metrics"] = self.task.metrics(np.concatenate(kept), np.asarray(self.data.label))
        return result

    def _write_predictions(self, path: Path, kept: list | None) -> int:
        """predictions.csv front to back (a resume after a lost peer starts it again); returns its rows."""
        from vfl.data.rowfiles import _Writer
        if kept is not None:
            kept.clear()
        count = len(self.data.ids)
        written_ids = self.data.table.written_ids
        out = _Writer(path, "predictions", self.spec.active)
        try:
            batches = (np.arange(start, min(start + EVAL_BATCH_ROWS, count))
                       for start in range(0, count, EVAL_BATCH_ROWS))
            for i, rows, prediction in self.predict_batches(batches, "predict", 0):
                frame = prediction_frame(self.dataset.id_column, written_ids._range(int(rows[0]), int(rows[-1]) + 1),
                                         prediction)
                out.write(frame.to_csv(index=False, header=i == 0).encode())
                if kept is not None:
                    kept.append(prediction)
            out.close()
        except BaseException:
            out.discard()
            raise
        return count

    # ------------------------------------------------------------------ persistence
    def _model_dir(self) -> Path:
        return checkpoint.model_dir(self.node.config.job_dir(self.spec.model_job or self.spec.job_id))

    def _own_model_dir(self) -> Path:
        return checkpoint.model_dir(self.job_dir)

    def _link_state(self) -> dict:
        return {name: link.state() for name, link in self.links.items()}

    def _checkpoint(self, epoch: int) -> None:
        checkpoint.save_checkpoint(self.job_dir, epoch, {
            "model": self.model.state_dict(), "bottom_module": self.spec.party(self.spec.active).bottom.module,
            "optimizers": [o.state_dict() for o in self.optimizers], "links": self._link_state(),
            "history": self.metrics_history}, self.spec.active)
        status.write_status(self.job_dir, self.spec.active, epoch=epoch)

    # ------------------------------------------------------------------ close: two phases
    def _close_succeeded(self, result: dict) -> None:
        """Every party writes its artifacts (staged), then every party commits: none shows a model of a job that
        failed at another party (issue 15: the passive once kept its model while the active failed its writes).

        The active party decides: it records `committing` before the first commit, so a restart finishes the
        commits (vfl/job/registry.py `recover`).
        """
        spec = self.spec
        save = spec.kind == "train"
        self.emit("log", "closing: every party writes its " + ("model part and " if save else "") +
                  "privacy report", stage="close")
        if save:
            self._save_own_part()
        final = self.final_epoch if spec.kind == "train" else AFTER_PSI  # where a lost peer resumes
        replies = self._resilient(
            lambda: dict(zip(self.links, self.each_link(lambda link: link.close("succeeded", save, "prepare")))), final)
        result["model_parts"] = {name: r.model_path for name, r in replies.items()}
        result["timing"] = {spec.active: self.timer.summary()}
        for name, reply in replies.items():
            result["timing"][name] = json.loads(reply.report_json or b"{}").get("timing", {})
        if save:
            result["model_parts"][spec.active] = str(checkpoint.model_part_path(self.job_dir))
        result["privacy"] = self._privacy_report(replies, result)
        atomic_write_text(checkpoint.staged(self.job_dir, self.job_dir / RESULT),
                          json.dumps(result, indent=1, default=str), "job result", spec.active)
        status.write_status(self.job_dir, spec.active, state=status.COMMITTING, stage="close")
        self.finish_commit()

    def finish_commit(self) -> None:
        """The close's second phase: commit at every passive party (repeated until the party is back: it commits
        from its disk), then here (result.json, the model part). Also what a restarted node does for a job it was
        committing."""
        save = self.spec.kind == "train"
        self.stage = "close"
        self.each_link(lambda link: self._until_back(link, lambda: link.close("succeeded", save, "commit"), "commit"))
        self.committed = True
        checkpoint.commit_staged(self.job_dir, self.spec.active)
        status.write_status(self.job_dir, self.spec.active, state=status.SUCCEEDED, stage="done")
        self._release_tables()
        try:
            result = json.loads((self.job_dir / RESULT).read_text())
        except (OSError, ValueError):
            result = {}
        record_job_lineage(self.node, self.spec, self.job_dir, "active", metrics=lineage_metrics(result))

    def _until_back(self, link: ActivePeer, call, what: str):
        """`call()`, repeated while `link`'s peer is unreachable, for up to timeouts.resume_wait_seconds."""
        wait = self.node.config.timeouts.resume_wait_seconds
        deadline = time.time() + wait
        while True:
            self._check_stop()  # a cancel or a drain does not wait for a lost peer
            try:
                return call()
            except PeerCallError as exc:
                if not exc.recoverable:
                    raise
                if time.time() > deadline:
                    raise JobFailed(f"peer {link.peer!r} did not come back within {wait:g} s (node config "
                                    f"timeouts.resume_wait_seconds) to {what}; its last answer: {exc.method} failed "
                                    f"with {exc.code}: {exc.detail}") from None
                time.sleep(1.0)

    def _reason_for_peers(self, exc: BaseException) -> str:
        """Why the job failed, as the passive parties may read it: the stage and a category, never this party's
        own error text (it can quote this party's data, paths or configuration) nor one peer's text to another."""
        if isinstance(exc, PeerCallError):
            what = f"a call to {exc.peer!r} ({exc.method}) failed with {exc.code}"
        elif isinstance(exc, JobFailed):
            what = "a peer did not come back in time"
        else:
            what = f"an error at the active party ({type(exc).__name__})"
        return f"failed at the active party's stage {self.stage}: {what}"

    def _close_unsuccessful(self, outcome: str, message: str, reason: str) -> None:
        """Close every party's side without success (failed, cancelled, suspended): staged artifacts are discarded
        everywhere, and a party that already committed is told to take it back. Best effort: a party that cannot be
        reached closes its side when the job's lease runs out. `message` is recorded here, `reason` sent to peers."""
        if self.committed:  # our own commit got this far: take it back like every other party's
            checkpoint.discard_committed(self.job_dir)
            with contextlib.suppress(OSError):
                (self.job_dir / RESULT).unlink(missing_ok=True)
        checkpoint.discard_staged(self.job_dir)
        for name, link in self.links.items():
            try:
                link.close(outcome, reason=reason)
            except PeerCallError as exc:
                log.warning("job %s: closing it at %s failed: %s", self.spec.job_id, name, exc)
        try:
            status.write_status(self.job_dir, self.spec.active, state=outcome, reason=message)
        except VflError as exc:  # the reason the job ends is what its submitter needs to see
            log.warning("job %s: %s", self.spec.job_id, exc)
        if outcome in (status.FAILED, status.CANCELLED):  # never resumed: its copies of the table go
            self._release_tables()

    def _release_tables(self) -> None:
        data = getattr(self, "data", None)
        release_tables(self.job_dir, getattr(self, "table", None), data.table if data is not None else None)

    def _save_own_part(self) -> None:
        own = self.spec.party(self.spec.active).bottom
        final = checkpoint.model_part_path(self.job_dir)
        checkpoint.save_torch(checkpoint.staged(self.job_dir, final), {
            "party": self.spec.active, "role": "active", "model": self.model.state_dict(),
            "bottom_module": own.module, "bottom_factory": self.bottom_factory_path,
            "links": self._link_state(), "standardizer": self.standardizer,
            "num_classes": self.task.num_classes, "task": self.task.kind}, "model part", self.spec.active)
        atomic_write_text(checkpoint.staged(self.job_dir, final.parent / checkpoint.SCHEMA),
                          self.table.schema.to_json(), "model schema", self.spec.active)

    def _privacy_report(self, replies: dict, result: dict) -> dict:
        from vfl.privacy.attacks import per_step_leak_auc
        from vfl.privacy.report import build_report, summary_line, write_report
        from vfl.privacy.tradeoff import PLOT as TRADEOFF_PLOT
        from vfl.privacy.tradeoff import tradeoff_for_report
        from vfl.privacy.tradeoff import write_plot as write_tradeoff_plot
        attacks: dict = {}
        label_of = None
        if self.spec.kind == "train" and self.data.label is not None:
            label_of = {str(i): int(y) for i, y in zip(self.data.ids, self.data.label)} \
                if self.spec.task != "regression" else None
        for name, reply in replies.items():
            payload = json.loads(reply.report_json or b"{}")
            scores = payload.get("attack_scores")
            if scores and label_of is not None:
                labels = np.array([label_of[i] for i in scores["ids"]])
                steps = np.array(scores["steps"])
                if self.spec.task == "binary":
                    for attack in ("norm", "direction"):
                        attacks[f"{name}.{attack}_leak_auc"] = per_step_leak_auc(labels, np.array(scores[attack]),
                                                                                 steps)
        if getattr(self, "membership", None) is not None:
            attacks["membership_auc"] = self.membership
        # every started epoch released noisy gradients, including one rolled back by a resume
        defense = self.defense.describe(max(self.epochs_started, self.spec.train.epochs)) \
            if self.defense is not None else {}
        # binary tasks: the measured trade-off of every shipped defense, this job's marked (vfl/privacy/tradeoff.py)
        tradeoff = tradeoff_for_report(defense or {"defense": "none"}) \
            if self.spec.task == "binary" and self.spec.kind == "train" else []
        report = build_report(self.spec.active, "active", self.spec.job_id, self.ledger.summary(),
                              self.spec.crypto.key_bits if scheme_for(self.spec.crypto.mode).encrypted else 0,
                              defense=defense, attacks=attacks, test_metrics=result.get("test", {}),
                              tradeoff=tradeoff)
        write_report(self.job_dir, report)
        write_tradeoff_plot(tradeoff, self.job_dir / TRADEOFF_PLOT)
        return summary_line(report)

    def _membership_auc(self) -> float:
        from vfl.privacy.attacks import membership_auc
        split = self.data.split

        def losses(positions: np.ndarray) -> np.ndarray:
            prediction = self.predict_rows(positions, "eval", self.spec.train.epochs + 1)
            y = np.asarray(self.data.label[positions])
            if self.task.kind == "binary":
                p = np.clip(prediction, 1e-7, 1 - 1e-7)
                return -(y * np.log(p) + (1 - y) * np.log(1 - p))
            return -np.log(np.clip(prediction[np.arange(len(y)), y], 1e-7, 1.0))
        return membership_auc(losses(split.train), losses(split.test))


def lineage_metrics(result: dict) -> dict:
    """The figures of a result that belong in its lineage: metrics, not paths or timings."""
    return {k: result[k] for k in ("test", "validation", "metrics", "intersection") if k in result}


def prediction_frame(id_column: str, written_ids: np.ndarray, prediction: np.ndarray):
    """The predictions table: the dataset's own ID column (its name, the IDs as its file wrote them), then
    `prediction` (binary: P(positive class); regression: the value) or p0..pK (multiclass: P(class k), the classes
    in the schema's order). A prediction column never takes the ID column's name."""
    import pandas as pd
    if prediction.ndim == 2:
        columns = {f"p{k}": prediction[:, k] for k in range(prediction.shape[1])}
    else:
        columns = {"prediction": prediction}
    while id_column in columns:
        columns = {f"{name}_": values for name, values in columns.items()}
    return pd.DataFrame({id_column: np.asarray(written_ids, dtype=object), **columns})
