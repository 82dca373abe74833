"""The passive party's side of a job: it answers the active party's calls, one step at a time.

State machine per job (vfl.job.state.JobState): opened -> (PSI: aligned) -> ready (set up) ->
[forward(train) -> backward]* / forward(eval) ... -> closed; a cardinality job: opened -> (PSI: counted) -> closed.
A job runs exactly one PSI session (vfl/job/psi_once.py). A call in the wrong state gets FAILED_PRECONDITION and
changes nothing. Requests and replies are typed messages (vfl.protocol.messages); the interactive layer's crypto is
the scheme's passive half (vfl.protocol.schemes), so nothing here depends on the scheme or the transport.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from psi.error_ids import logged_error_id
from psi.errors import OutOfOrder as PsiOutOfOrder
from vfl.data.id_shape import shape_of_ids
from vfl.data import sealed
from vfl.data.atomic import atomic_write_bytes, atomic_write_text, serialized
from vfl.errors import ConfigError, DataError, OutOfOrder, ProtocolError, StorageError, quote, shorten
from vfl.job import checkpoint, psi_once, status
from vfl.job.ledger import JOURNAL, WireLedger
from vfl.job.lineage import record_job_lineage
from vfl.job.party_data import (AlignedData, align, aligned_table, alignment_size, audit_for_job, prepare_dataset,
                                release_tables, save_alignment)
from vfl.job.peer import hyper_of
from vfl.job.private_random import for_node
from vfl.job.spec import EVAL_BATCH_ROWS, JobSpec
from vfl.job.state import JobState
from vfl.job.timing import Timer, TimedOps
from vfl.models.custom import build_bottom, check_saved_module, load_part, resolve_factory
from vfl.privacy.report import build_report, write_report
from vfl.protocol.layout import Layout
from vfl.protocol.messages import (CloseJobReply, CloseJobRequest, EndEpochReply, EndEpochRequest, ForwardReply,
                                   ForwardRequest, InputGradientReply, InputGradientRequest, OpenJobReply, Reply,
                                   Request, SetupReply, SetupRequest, WeightGradientReply, WeightGradientRequest,
                                   FRESH, decode_rows)
from vfl.protocol.schemes import scheme_for

log = logging.getLogger("vfl.passive")
PHASES = ("train", "eval", "predict")


@contextmanager
def own_input_errors(party: str, what: str) -> Iterator[None]:
    """Errors about this party's own data or configuration reach the active party as an error id only.

    They are written for this node's operator: they quote file paths, the first bad value, a duplicated raw ID,
    the datasets and models this node serves. The peer learns which step failed and an id; the detail goes to
    this node's log under the same id.
    """
    try:
        yield
    except (DataError, ConfigError) as exc:
        error_id = logged_error_id(exc, party, what, log, kind="own data or configuration error")
        raise type(exc)(f"{what}: party {party!r} cannot use its own data or configuration for this job "
                        f"(error id {error_id}); details are in that node's log") from None


class PassiveJob:
    def __init__(self, node, spec: JobSpec, active: str, resume_epoch: int):
        self.node = node
        self.spec = spec
        self.active = active
        self.party = node.config.party
        self.job_dir: Path = node.config.job_dir(spec.job_id)
        self.resume_epoch = resume_epoch  # FRESH, AFTER_PSI, or the epoch whose checkpoint set-up restores
        self.lock = threading.RLock()
        # one ledger across every reopening of the job here, and across restarts (vfl/job/ledger.py)
        self.ledger = WireLedger(self.job_dir / JOURNAL, self.party)
        self.lease_seconds = node.config.timeouts.lease_seconds
        self.renewed = time.monotonic()  # every call of its active party renews the job's lease
        self.timer = Timer()
        self.state = JobState.OPENED
        with own_input_errors(self.party, f"dataset {spec.party(self.party).dataset!r}"):
            dataset = node.dataset(spec.party(self.party).dataset)
            if dataset.label:
                raise DataError(f"label declared at more than one party: {spec.active!r} holds the labels of job "
                                f"{spec.job_id!r}, but dataset {dataset.name!r} ({dataset.path}) of {self.party!r} "
                                f"declares label column {dataset.label!r}")
        self.dataset = dataset
        self.table = None
        self.data: AlignedData | None = None
        self.pending: dict | None = None
        self.last_step: tuple[int, int] = (-1, -1)
        self.recorded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.aligned = threading.Event()
        self.aligning = threading.Event()   # the PSI result is being written (set-up waits for it to finish)
        self.alignment_error: StorageError | None = None  # the PSI result could not be saved here
        self.prepared: CloseJobReply | None = None        # the reply to this job's prepare, sent again if repeated
        self.unrecorded: dict | None = None  # how the job closed, if its status file could not say so
        self.bottom_factory = None       # this party's own bottom model factory, if the job names one
        self.bottom_factory_path = None
        self.half = None                 # the scheme's passive half, from set-up on
        self.closed_as: tuple[str, str] | None = None  # (outcome, reason) once closed without success

    def handle(self, request: Request) -> Reply:
        """Answer one of the active party's step calls, recording both in this job's wire ledger."""
        handlers = {SetupRequest: self.setup, ForwardRequest: self.forward, WeightGradientRequest: self.weight_gradient,
                    InputGradientRequest: self.input_gradient, EndEpochRequest: self.end_epoch}
        handler = handlers.get(type(request))
        if handler is None:
            raise ProtocolError(f"job {self.spec.job_id!r}: {type(request).__name__} is not a step call")
        self.renew()
        self.ledger.record_message("received", self.active, request)
        try:
            reply = handler(request)
        except OutOfOrder:
            self._raise_if_closed()  # closed meanwhile (a cancel here, the lease): say how, not just "not ready"
            raise
        self.ledger.record_message("sent", self.active, reply)
        return reply

    def _raise_if_closed(self) -> None:
        if self.state == JobState.CLOSED and self.closed_as is not None:
            outcome, reason = self.closed_as
            raise OutOfOrder(f"job {self.spec.job_id!r} was closed at {self.party!r} as {outcome}"
                             + (f" ({reason})" if reason else ""))

    # ---------------------------------------------------------------- lease
    def renew(self) -> float:
        self.renewed = time.monotonic()
        return self.lease_seconds

    def lease_expired(self, now: float) -> bool:
        return self.state != JobState.CLOSED and now - self.renewed > self.lease_seconds

    def expire(self) -> None:
        """Its active party stopped renewing the lease: close the job here. A prepared close is rolled back (the
        commit never came); otherwise the job stays resumable from its checkpoints, should its active party return."""
        with self.lock:
            if self.state == JobState.CLOSED:
                return
            silent = f"its active party {self.active!r} sent nothing for {self.lease_seconds:g} s (node config " \
                     "timeouts.lease_seconds)"
            if self.state == JobState.PREPARED:
                self._abort(status.FAILED, f"lease expired before the commit: {silent}; the staged model part is "
                                           "discarded")
            else:
                self._abort(status.INTERRUPTED, f"lease expired: {silent}; a resume reopens it")

    def cancel(self, reason: str) -> None:
        """This node's operator cancels the job here: closed as cancelled, and a resume of it is refused."""
        with self.lock:
            self._abort(status.CANCELLED, reason)

    # ---------------------------------------------------------------- open / PSI
    def open(self) -> OpenJobReply:
        with own_input_errors(self.party, f"dataset {self.dataset.name!r}"):
            audit_for_job(self.dataset, self.job_dir, self.node.config.policy.allow_pii_columns,
                          uses_features=self.spec.kind in ("train", "predict"))
            schema = self._saved_schema() if self.spec.kind == "predict" else None
            # read in chunks into the job's folder, never whole into memory (vfl/job/party_data.py)
            self.table = prepare_dataset(self.dataset, self.job_dir, self.spec.task, schema=schema,
                                         ids_only=self.spec.kind in ("psi", "cardinality"), party=self.party)
        # This party's own bottom model, if the job names one: only this node's config maps the name to
        # code, and a dry forward checks it before PSI starts.
        bottom = self.spec.party(self.party).bottom
        models = self.node.models()
        self.bottom_factory_path = models.get(bottom.module) if bottom.module else None
        self.bottom_factory = resolve_factory(models, bottom.module, self.party, for_peer=True)
        if bottom.module is not None:
            build_bottom(bottom, self.table.feature_dim, self.bottom_factory, self.party, for_peer=True)
        psi = self.spec.psi  # coarse shares and a length, never IDs: vfl/data/id_shape.py
        return OpenJobReply(rows=len(self.table), feature_dim=self.table.feature_dim,
                            resumable_epoch=checkpoint.last_checkpoint(self.job_dir),
                            id_shape=shape_of_ids(self.table.ids, psi.strip, psi.lowercase).to_wire(),
                            lease_seconds=self.lease_seconds)

    def claim_psi(self, hello, caller: str):
        """This party's IDs for the job's one PSI session; every other session is refused (vfl/job/psi_once.py).

        The claim comes before the check of the session's settings, so a refused or failed first session uses
        up the job's PSI as well: the job must then run again under a new job id. The IDs are read from the job's
        table on disk, a chunk at a time (psi.protocol.ids.ChunkedIds); PSI spills to the job's folder.
        """
        with self.lock:
            if self.resume_epoch != FRESH:  # a resumed job continues on its saved alignment
                raise PsiOutOfOrder(psi_once.resumed_message(self.spec.job_id, self.party))
            psi_once.claim(self.job_dir, self.spec.job_id, self.party, hello, caller, self.state.value)
            psi_once.check_settings(self.spec, hello, self.party)
            return self.table.id_source(self.job_dir)

    def on_psi_result(self, result) -> None:
        """Write the session's alignment (streamed: it takes a while for a large table, and holds no lock meanwhile,
        so the job's lease and close calls are served); set-up waits for it."""
        from psi.core.hashing import Canonicalization
        self.aligning.set()
        try:
            save_alignment(self.job_dir, self.table, result, Canonicalization(self.spec.psi.strip,
                                                                            self.spec.psi.lowercase), self.party)
        except StorageError as exc:  # set-up reports it at once, instead of waiting for an alignment
            self.alignment_error = exc
            self.aligned.set()
            return
        finally:
            result.close()
        with self.lock:
            if self.state == JobState.OPENED:
                self.state = JobState.ALIGNED
        self.aligned.set()
        log.info("job %r: PSI aligned %d common IDs of this party's %d", self.spec.job_id, result.size,
                 len(self.table) if self.table is not None else -1)

    def on_cardinality_result(self, size: int) -> None:
        """A cardinality job ends with its one session: there are no rows to align, and it never sets up."""
        with self.lock:
            self.state = JobState.COUNTED
        log.info("job %r: cardinality session done, %d common IDs", self.spec.job_id, size)

    # ---------------------------------------------------------------- setup
    def setup(self, req: SetupRequest) -> SetupReply:
        if self.spec.kind in ("psi", "cardinality"):  # these jobs end with their PSI; nothing to train on
            raise OutOfOrder(f"setup: job {self.spec.job_id!r} is a {self.spec.kind} job, which ends with its PSI "
                             "session and never sets up training")
        # The PSI service stores the alignment when its session ends, which can be a moment after the
        # active party's side returned; a resumed job finds it on disk.
        if self.resume_epoch == FRESH and not self.aligned.wait(timeout=60):
            # a large table's alignment takes a while: wait for it once it is being written
            if not (self.aligning.is_set() and self.aligned.wait(timeout=self.node.config.timeouts.call_seconds)):
                raise OutOfOrder(f"setup: job {self.spec.job_id!r} has no PSI alignment yet (run PSI first)")
        if self.alignment_error is not None:
            raise self.alignment_error
        with self.lock:
            if self.state not in (JobState.OPENED, JobState.ALIGNED):  # a replay would re-key and re-share mid-job
                raise OutOfOrder(f"setup: job {self.spec.job_id!r} is already set up (state {self.state})")
            with own_input_errors(self.party, "setup"):
                aligned_rows = alignment_size(self.job_dir)
            if req.aligned_rows != aligned_rows:
                raise ProtocolError(f"setup: active party reports {req.aligned_rows} aligned rows, "
                                    f"this party's PSI result has {aligned_rows}")
            layout = Layout.from_json(req.layout)
            spec = self.spec
            bottom_spec = spec.party(self.party).bottom
            if layout.d != bottom_spec.out or layout.m != spec.interactive_out:
                raise ProtocolError(f"setup: layout d={layout.d}, m={layout.m} disagrees with the job spec "
                                    f"(d={bottom_spec.out}, m={spec.interactive_out})")
            allowed_batch = max(spec.train.max_batch_size, EVAL_BATCH_ROWS)  # the batch cap checked at OpenJob
            if layout.max_batch > allowed_batch:
                raise ProtocolError(f"setup: layout max_batch={layout.max_batch} exceeds the job spec's batches "
                                    f"(train.batch_size {spec.train.max_batch_size}, evaluation {EVAL_BATCH_ROWS})")
            with own_input_errors(self.party, "setup"):
                saved = self._load_model_part() if spec.kind == "predict" else None
                if saved is not None:
                    check_saved_module(saved, bottom_spec.module, spec.model_job, self.party)
                from psi.core.hashing import Canonicalization
                aligned = aligned_table(self.job_dir, self.table, Canonicalization(spec.psi.strip, spec.psi.lowercase),
                                        self.party)
                self.data, self.standardizer = align(aligned, spec,
                                                     standardizer=saved["standardizer"] if saved else None,
                                                     ids_in_memory=spec.kind == "train")
            self.layout = layout
            # this party's secrets come from its own node (OS or node-local secret seed), never from the spec
            private = for_node(self.node.config, self.party)
            private.seed_torch("torch")
            self.bottom = build_bottom(bottom_spec, self.data.feature_dim, self.bottom_factory, self.party,
                                       private.seed("bottom"), for_peer=True)
            self.optimizer = torch.optim.Adam(self.bottom.parameters(), lr=spec.train.lr)
            self.half = scheme_for(spec.crypto.mode).passive_half(layout, hyper_of(spec), spec.crypto.key_bits,
                                                                  self.node.compute,
                                                                  lambda ops: TimedOps(ops, self.timer))
            restored_share = None
            if saved is not None:
                load_part(self.bottom, saved["bottom"], bottom_spec, spec.model_job, self.party, for_peer=True)
                restored_share = saved["share"]
            elif self.resume_epoch >= 0:
                restored_share = self._restore(self.resume_epoch)
            fields = self.half.setup(req, spec.interactive_init_std, private.numpy("interactive-half"), restored_share)
            if self.node.config.compute.pipeline and self.node.config.compute.backend == "local":
                # the randomness of each step computed while this party waits, by a thread of this process; on Ray it
                # stays on the cluster's tasks and key holders (docs/scale.md)
                self.half.keep_ready(layout.max_batch)
            self.state = JobState.READY
            log.info("job %r: set up (%s, %d aligned rows, %d features%s)", spec.job_id, spec.crypto.mode,
                     len(self.data.ids), self.data.feature_dim,
                     f", resuming after epoch {self.resume_epoch}" if self.resume_epoch >= 0 else
                     ", set up again on its saved alignment" if self.resume_epoch != FRESH else "")
            return SetupReply(bottom_out=layout.d, **fields)

    @property
    def share(self):
        """This party's share of the interactive weight (None in plaintext mode, where the active party holds W)."""
        return self.half.share if self.half is not None else None

    # ---------------------------------------------------------------- forward
    def forward(self, req: ForwardRequest) -> ForwardReply:
        with self.lock:
            if self.state != JobState.READY:
                raise OutOfOrder(f"forward: job {self.spec.job_id!r} is {self.state}, not ready")
            if req.phase not in PHASES:
                raise ProtocolError(f"forward: unknown phase {quote(req.phase)}")
            if self.pending is not None:
                raise OutOfOrder(f"forward: step {self.pending['step']} of epoch {self.pending['epoch']} "
                                 "still waits for its backward call")
            if req.phase == "train" and (req.epoch, req.step) <= self.last_step:
                raise OutOfOrder(f"forward: step ({req.epoch}, {req.step}) is not after ({self.last_step})")
            rows = decode_rows(req.rows, len(self.data.ids), self.layout.max_batch)
            if req.step == 0:
                log.info("job %r: %s phase begins (epoch index %d)", self.spec.job_id, req.phase, req.epoch)
            x = torch.from_numpy(self.data.features[rows])
            train = req.phase == "train"
            self.bottom.train(train)
            with torch.set_grad_enabled(train), self.timer.measure("torch"):
                h = self.bottom(x)
            reply, forward_state = self.half.forward(req, h.detach().numpy().astype(np.float64), train)
            if train:
                self.pending = {"epoch": req.epoch, "step": req.step, "h": h, "forward_state": forward_state,
                                "rows": rows, "done": set()}
            return reply

    # ---------------------------------------------------------------- backward
    def _pending_for(self, req, what: str) -> dict:
        p = self.pending
        if p is None or (p["epoch"], p["step"]) != (req.epoch, req.step):
            raise OutOfOrder(f"{what}: no forward pending for step ({req.epoch}, {req.step})")
        if what in p["done"]:
            raise OutOfOrder(f"{what}: already received for step ({req.epoch}, {req.step})")
        return p

    def _finish_if_complete(self, p: dict) -> None:
        if self.half.backward_calls <= p["done"]:
            self.pending = None
            self.last_step = (p["epoch"], p["step"])

    def weight_gradient(self, req: WeightGradientRequest) -> WeightGradientReply:
        """[h^T D + Q]_A for the active party; this party keeps -Q as its gradient share."""
        with self.lock:
            p = self._pending_for(req, "weight gradient")
            reply = self.half.weight_gradient(req, p["forward_state"], len(p["rows"]))
            p["done"].add("weight gradient")
            self._finish_if_complete(p)
            return reply

    def input_gradient(self, req: InputGradientRequest) -> InputGradientReply:
        """Decrypt this party's input gradient delta W^T and back-propagate the bottom model."""
        with self.lock:
            p = self._pending_for(req, "input gradient")
            rows = len(p["rows"])
            grad = self.half.input_gradient(req, rows)
            if self.spec.privacy.record_gradients or self.spec.privacy.attacks:
                # opt-in attack-harness hook: exactly what this party received, per row and step
                step_id = np.full(rows, req.epoch * 1_000_000 + req.step, dtype=np.int64)
                self.recorded.append((self.data.ids[p["rows"]].copy(), step_id, grad.astype(np.float32)))
            bound = self.spec.crypto.activation_bound
            h = p["h"]
            # d clamp(h)/dh is 1 inside the bound and 0 outside, as in the plaintext model
            grad_t = torch.from_numpy(grad).to(h.dtype) * (h.detach().abs() <= bound).to(h.dtype)
            with self.timer.measure("torch"):
                self.optimizer.zero_grad()
                h.backward(grad_t)
                self.optimizer.step()
            p["done"].add("input gradient")
            self._finish_if_complete(p)
            return InputGradientReply()

    # ---------------------------------------------------------------- checkpoints and close
    def end_epoch(self, req: EndEpochRequest) -> EndEpochReply:
        with self.lock:
            if self.pending is not None:
                raise OutOfOrder("end of epoch while a training step waits for its gradients")
            path = ""
            if req.checkpoint:
                path = self._peer_visible(self._checkpoint(req.epoch))
            log.info("job %r: %d epoch(s) done%s", self.spec.job_id, req.epoch, f", checkpoint {path}" if path else "")
            return EndEpochReply(checkpoint=path)

    def _checkpoint(self, epoch: int) -> Path:
        path = checkpoint.save_checkpoint(self.job_dir, epoch, {
            "bottom": self.bottom.state_dict(), "optimizer": self.optimizer.state_dict(),
            "bottom_module": self.spec.party(self.party).bottom.module, "share": self.share,
            "last_step": self.last_step}, self.party)
        status.write_status(self.job_dir, self.party, epoch=epoch, stage="train")
        return path

    def _peer_visible(self, path: Path) -> str:
        """A file of this job as the active party may see it: relative to this node's jobs directory, so its
        layout on this party's disk stays here ("<job_id>/model/party.pt")."""
        return str(path.relative_to(self.node.config.jobs_dir))

    def _restore(self, epoch: int):
        """Bottom model, optimizer and step counter from the checkpoint of `epoch`; returns the saved share."""
        state = checkpoint.load_checkpoint(self.job_dir, epoch, self.party)
        self.bottom.load_state_dict(state["bottom"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.last_step = tuple(state["last_step"])
        return state["share"]

    def close(self, req: CloseJobRequest) -> CloseJobReply:
        """Two-phase for a job that succeeded (prepare, then commit); any other status closes and rolls back."""
        with self.lock:
            if req.status == "succeeded" and req.phase == "prepare":
                return self._prepare(req)
            if req.status == "succeeded" and req.phase == "commit":
                return self._commit()
            if req.status == "succeeded":
                raise ProtocolError(f"close: job {self.spec.job_id!r}: a job that succeeded closes in two phases "
                                    f"(prepare, commit), not {quote(req.phase) if req.phase else 'at once'}")
            return self._abort(req.status, req.reason)

    def _prepare(self, req: CloseJobRequest) -> CloseJobReply:
        """Write every artifact of this party (staged: visible only at commit) and its privacy report."""
        if self.prepared is not None:  # the active party did not get our reply: the same again
            return self.prepared
        if self.state == JobState.CLOSED:
            raise OutOfOrder(f"close: job {self.spec.job_id!r} is already closed at {self.party!r}")
        model_path = ""
        if req.save_model and self.data is not None and self.spec.kind == "train":
            model_path = self._peer_visible(self._save_model_part())
        payload = self._write_report()
        status.write_status(self.job_dir, self.party, state=status.PREPARED, stage="close")
        self.state = JobState.PREPARED
        log.info("job %r: close prepared%s", self.spec.job_id,
                 f", model part staged for {model_path}" if model_path else "")
        self.prepared = CloseJobReply(model_path=model_path, report_json=json.dumps(payload).encode())
        return self.prepared

    def _commit(self) -> CloseJobReply:
        if self.state == JobState.CLOSED and (status.read_status(self.job_dir) or {}).get("state") == status.SUCCEEDED:
            return CloseJobReply(model_path=self.prepared.model_path if self.prepared else "")
        if self.state != JobState.PREPARED:
            raise OutOfOrder(f"close: job {self.spec.job_id!r} cannot commit at {self.party!r}: it is {self.state}, "
                             "not prepared")
        commit_on_disk(self.job_dir, self.party)
        self.state = JobState.CLOSED
        self.release_key()
        self._release_tables()
        log.info("job %r: closed (succeeded)", self.spec.job_id)
        record_job_lineage(self.node, self.spec, self.job_dir, "passive")
        return CloseJobReply(model_path=self.prepared.model_path)

    def _abort(self, outcome: str, reason: str) -> CloseJobReply:
        """Close without success: staged artifacts are discarded; the checkpoints stay (a suspended job resumes)."""
        if outcome not in (status.FAILED, status.CANCELLED, status.SUSPENDED, status.INTERRUPTED):
            raise ProtocolError(f"close: unknown status {quote(outcome)}")
        checkpoint.discard_staged(self.job_dir)
        reason = shorten(reason or "")  # the active party's words, kept here: bounded like any error message
        self.closed_as = (outcome, reason)
        payload = {}
        try:  # on a full or read-only disk the job still closes; its log says what could not be recorded
            payload = self._write_report() if self.state != JobState.CLOSED else {}
            status.write_status(self.job_dir, self.party, state=outcome, reason=reason or None)
        except StorageError as exc:
            log.warning("job %r: closing (%s): %s", self.spec.job_id, outcome, exc)
            self.unrecorded = {"state": outcome, "reason": reason}
        log.info("job %r: closed (%s, state %s)%s", self.spec.job_id, outcome, self.state.value,
                 f": {' '.join(reason.split())}" if reason else "")
        self.state = JobState.CLOSED
        self.release_key()
        if outcome in (status.FAILED, status.CANCELLED):  # never resumed: its copies of the table go
            self._release_tables()
        return CloseJobReply(report_json=json.dumps(payload).encode())

    def _release_tables(self) -> None:
        release_tables(self.job_dir, self.table, self.data.table if self.data is not None else None)

    def _write_report(self) -> dict:
        """This party's privacy report (what crossed the wire, as it saw it), and the payload of its close reply."""
        attack_scores = self._attack_scores()
        report = build_report(self.party, "passive", self.spec.job_id, self.ledger.summary(),
                              self.spec.crypto.key_bits if scheme_for(self.spec.crypto.mode).encrypted else 0,
                              defense=self._declared_defense(),
                              attacks={"label_inference": "scores sent to the active party for evaluation"}
                              if attack_scores else None)
        write_report(self.job_dir, report)
        payload = {"report": report, "attack_scores": attack_scores}
        if self.node.config.report_handler_timing:  # its crypto time depends on this party's data
            payload["timing"] = self.timer.summary()
        return payload

    def release_key(self) -> None:
        """End this party's key of the job (on Ray, its key holders end with it); the share stays for the model."""
        if self.half is not None:
            self.half.close()

    def _declared_defense(self) -> dict:
        """The defense the job spec declares, with its epsilon from the same accountant the active party uses.

        The noise is added at the active party; this party cannot verify it, only read what was agreed.
        """
        from vfl.privacy.defenses import defense_for_job
        described = defense_for_job(self.spec).describe(self.spec.train.epochs)
        if described.get("clip_norm") == []:
            described["clip_norm"] = "set by the active party at each epoch's first batch"
        described["applied_by"] = f"{self.spec.active} (active party), as declared in the job spec"
        return described

    def _attack_scores(self) -> dict | None:
        """Save the recorded gradients; with the harness on, score them with both label-inference attacks."""
        if not self.recorded:
            return None
        from vfl.privacy.attacks import direction_scores, norm_scores
        ids = np.concatenate([r[0] for r in self.recorded]).astype(str)
        steps = np.concatenate([r[1] for r in self.recorded])
        grads = np.concatenate([r[2] for r in self.recorded])
        data = serialized(lambda buffer: np.savez_compressed(buffer, ids=ids, steps=steps, gradients=grads))
        atomic_write_bytes(self.job_dir / "recorded_gradients.npz", data, "recorded gradients", self.party)
        if not self.spec.privacy.attacks:
            return None
        return {"ids": ids.tolist(), "steps": steps.tolist(), "norm": norm_scores(grads).tolist(),
                "direction": direction_scores(grads, steps).tolist()}

    def _save_model_part(self) -> Path:
        """Staged until the commit; returns the path it will have then."""
        final = checkpoint.model_part_path(self.job_dir)
        checkpoint.save_torch(checkpoint.staged(self.job_dir, final), {
            "party": self.party, "role": "passive", "bottom": self.bottom.state_dict(),
            "bottom_module": self.spec.party(self.party).bottom.module, "bottom_factory": self.bottom_factory_path,
            "share": self.share, "standardizer": self.standardizer, "feature_names": self.data.feature_names},
            "model part", self.party)
        atomic_write_text(checkpoint.staged(self.job_dir, final.parent / checkpoint.SCHEMA),
                          self.table.schema.to_json(), "model schema", self.party)
        return final

    def _model_dir(self) -> Path:
        return checkpoint.model_dir(self.node.config.job_dir(self.spec.model_job))

    def _saved_schema(self):
        from vfl.data import Schema
        path = self._model_dir() / checkpoint.SCHEMA
        if not path.exists():
            raise DataError(f"model job {self.spec.model_job!r}: no saved model part at {path.parent}")
        return Schema.from_json(sealed.read_text(path))

    def _load_model_part(self) -> dict:
        path = self._model_dir() / checkpoint.MODEL_PART
        if not path.exists():
            raise DataError(f"model job {self.spec.model_job!r}: no saved model part at {path}")
        return checkpoint.load_torch(path)


def commit_on_disk(job_dir: Path, party: str) -> None:
    """Make a prepared close final: staged artifacts into place, then the status (the commit's record)."""
    checkpoint.commit_staged(job_dir, party)
    status.write_status(job_dir, party, state=status.SUCCEEDED, stage="done")
