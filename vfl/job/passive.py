"""The passive party's side of a job: it answers the active party's calls, one step at a time.

State machine per job: opened -> (PSI: aligned) -> set up -> [forward(train) -> backward]* / forward(eval) ...
-> closed; a cardinality job: opened -> (PSI: counted) -> closed. A job runs exactly one PSI session
(vfl/job/psi_once.py). A call in the wrong state gets FAILED_PRECONDITION and changes nothing.
"""
from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from psi.errors import OutOfOrder as PsiOutOfOrder
from vfl.errors import ConfigError, DataError, ProtocolError
from vfl.job import crypto, psi_once
from vfl.job.ledger import WireLedger
from vfl.job.timing import Timer, TimedOps
from vfl.job.party_data import AlignedData, align, load_alignment, load_dataset, save_alignment
from vfl.job.private_random import for_node
from vfl.job.spec import JobSpec
from vfl.models.custom import build_bottom, check_saved_module, load_part, resolve_factory
from vfl.privacy.report import build_report, write_report
from vfl.protocol import interactive as proto
from vfl.protocol.layout import Layout
from vfl.transport.chunking import OutOfOrder
from vfl.transport.proto import node_pb2 as pb

log = logging.getLogger("vfl.passive")
PHASES = ("train", "eval", "predict")


@contextmanager
def own_input_errors(party: str, what: str) -> Iterator[None]:
    """Errors about this party's own data or configuration reach the active party as an error id only.

    They are written for this node's operator: they quote file paths, the first bad value, a duplicated raw ID,
    the datasets and models this node serves. The peer learns which step failed and an id; the detail goes to
    this node's log under the same id.
    """
    from psi.error_ids import logged_error_id
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
        self.resume_epoch = resume_epoch
        self.lock = threading.RLock()
        self.ledger = WireLedger()
        self.timer = Timer()
        self.state = "opened"
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
        self.bottom_factory = None       # this party's own bottom model factory, if the job names one
        self.bottom_factory_path = None

    # ---------------------------------------------------------------- open / PSI
    def open(self) -> pb.OpenJobReply:
        with own_input_errors(self.party, f"dataset {self.dataset.name!r}"):
            schema = self._saved_schema() if self.spec.kind == "predict" else None
            self.table = load_dataset(self.dataset, self.spec.task, schema=schema)
        # This party's own bottom model, if the job names one: only this node's config maps the name to
        # code, and a dry forward checks it before PSI starts.
        bottom = self.spec.party(self.party).bottom
        models = self.node.models()
        self.bottom_factory_path = models.get(bottom.module) if bottom.module else None
        self.bottom_factory = resolve_factory(models, bottom.module, self.party, for_peer=True)
        if bottom.module is not None:
            build_bottom(bottom, int(self.table.features.shape[1]), self.bottom_factory, self.party,
                         for_peer=True)
        return pb.OpenJobReply(rows=len(self.table), feature_dim=int(self.table.features.shape[1]),
                               resumable_epoch=self.last_checkpoint())

    def claim_psi(self, hello, caller: str) -> list[str]:
        """This party's IDs for the job's one PSI session; every other session is refused (vfl/job/psi_once.py).

        The claim comes before the check of the session's settings, so a refused or failed first session uses
        up the job's PSI as well: the job must then run again under a new job id.
        """
        with self.lock:
            if self.resume_epoch >= 0:  # a resumed job continues on its saved alignment
                raise PsiOutOfOrder(psi_once.resumed_message(self.spec.job_id, self.party))
            psi_once.claim(self.job_dir, self.spec.job_id, self.party, hello, caller, self.state)
            psi_once.check_settings(self.spec, hello, self.party)
            return [str(i) for i in self.table.ids]

    def on_psi_result(self, common_ids, own_rows) -> None:
        with self.lock:
            save_alignment(self.job_dir, np.asarray(common_ids, dtype=object), np.asarray(own_rows))
            self.state = "aligned"
        self.aligned.set()

    def on_cardinality_result(self, size: int) -> None:
        """A cardinality job ends with its one session: there are no rows to align, and it never sets up."""
        with self.lock:
            self.state = "counted"
        log.info("job %r: cardinality session done, %d common IDs", self.spec.job_id, size)

    # ---------------------------------------------------------------- setup
    def setup(self, req: pb.SetupRequest) -> pb.SetupReply:
        if self.spec.kind in ("psi", "cardinality"):  # these jobs end with their PSI; nothing to train on
            raise OutOfOrder(f"setup: job {self.spec.job_id!r} is a {self.spec.kind} job, which ends with its PSI "
                             "session and never sets up training")
        # The PSI service stores the alignment when its session ends, which can be a moment after the
        # active party's side returned; a resumed job finds it on disk.
        if self.resume_epoch < 0 and not self.aligned.wait(timeout=60):
            raise OutOfOrder(f"setup: job {self.spec.job_id!r} has no PSI alignment yet (run PSI first)")
        with self.lock:
            if self.state not in ("opened", "aligned"):  # a replay would re-key and re-share mid-job
                raise OutOfOrder(f"setup: job {self.spec.job_id!r} is already set up (state {self.state})")
            with own_input_errors(self.party, "setup"):
                ids, own_rows = load_alignment(self.job_dir)
            if req.aligned_rows != len(ids):
                raise ProtocolError(f"setup: active party reports {req.aligned_rows} aligned rows, "
                                    f"this party's PSI result has {len(ids)}")
            layout = Layout.from_json(req.layout)
            spec = self.spec
            bottom_spec = spec.party(self.party).bottom
            if layout.d != bottom_spec.out or layout.m != spec.interactive_out:
                raise ProtocolError(f"setup: layout d={layout.d}, m={layout.m} disagrees with the job spec "
                                    f"(d={bottom_spec.out}, m={spec.interactive_out})")
            with own_input_errors(self.party, "setup"):
                saved = self._load_model_part() if spec.kind == "predict" else None
                if saved is not None:
                    check_saved_module(saved, bottom_spec.module, spec.model_job, self.party)
                self.data, self.standardizer = align(self.table, ids, own_rows, spec,
                                                     standardizer=saved["standardizer"] if saved else None)
            self.layout = layout
            # this party's secrets come from its own node (OS or node-local secret seed), never from the spec
            private = for_node(self.node.config, self.party)
            private.seed_torch("torch")
            self.bottom = build_bottom(bottom_spec, self.data.feature_dim, self.bottom_factory, self.party,
                                       private.seed("bottom"), for_peer=True)
            self.optimizer = torch.optim.Adam(self.bottom.parameters(), lr=spec.train.lr)
            self.paillier = spec.crypto.mode == "paillier"
            reply = pb.SetupReply(bottom_out=layout.d)
            if self.paillier:
                self.ops_a = TimedOps(crypto.public_ops_from_bytes(req.active_public_key, req.active_djn_base,
                                                                   spec.crypto.key_bits,
                                                                   self.node.config.workers,
                                                                   layout.exponent_sum_bits()), self.timer)
                self.ops_p = TimedOps(crypto.new_private_ops(spec.crypto.key_bits, self.node.config.workers),
                                      self.timer)
                reply.passive_public_key = crypto.public_key_bytes(self.ops_p)
                reply.passive_djn_base = crypto.djn_base_bytes(self.ops_p)
            if saved is not None:
                load_part(self.bottom, saved["bottom"], bottom_spec, spec.model_job, self.party, for_peer=True)
                self.share = saved["share"]
            elif self.resume_epoch >= 0:
                self._restore(self.resume_epoch)
            else:
                self.share, masked = proto.passive_init(layout, spec_init_std(spec, layout),
                                                        private.numpy("interactive-half"))
                if self.paillier:
                    reply.init_masked = encode_int_matrix(masked)
            self.state = "ready"
            return reply

    # ---------------------------------------------------------------- forward
    def _rows(self, req) -> np.ndarray:
        if len(req.rows) % 4:
            raise ProtocolError("forward: rows must be int32 values")
        rows = np.frombuffer(req.rows, dtype="<i4").astype(np.int64)
        n = len(self.data.ids)
        if len(rows) == 0 or len(rows) > self.layout.max_batch:
            raise ProtocolError(f"forward: batch of {len(rows)} rows (allowed 1..{self.layout.max_batch})")
        if rows.min() < 0 or rows.max() >= n:
            raise ProtocolError(f"forward: row position out of range 0..{n - 1}")
        return rows

    def forward(self, req: pb.ForwardRequest) -> pb.ForwardReply:
        with self.lock:
            if self.state != "ready":
                raise OutOfOrder(f"forward: job {self.spec.job_id!r} is {self.state}, not ready")
            if req.phase not in PHASES:
                raise ProtocolError(f"forward: unknown phase {req.phase!r}")
            if self.pending is not None:
                raise OutOfOrder(f"forward: step {self.pending['step']} of epoch {self.pending['epoch']} "
                                 "still waits for its backward call")
            if req.phase == "train" and (req.epoch, req.step) <= self.last_step:
                raise OutOfOrder(f"forward: step ({req.epoch}, {req.step}) is not after ({self.last_step})")
            rows = self._rows(req)
            x = torch.from_numpy(self.data.features[rows])
            train = req.phase == "train"
            self.bottom.train(train)
            with torch.set_grad_enabled(train), self.timer.measure("torch"):
                h = self.bottom(x)
            bound = self.spec.crypto.activation_bound
            reply = pb.ForwardReply()
            if not self.paillier:
                reply.h_plain = h.detach().clamp(-bound, bound).numpy().astype("<f4").tobytes()
                h_int = None
            else:
                slot = self.layout.forward_layout()
                u_bases = crypto.from_bytes(self.ops_a, req.u_ciphertexts, self.layout.d * slot.groups,
                                            "forward.u_ciphertexts")
                h_int = proto.encode_activations(h.detach().numpy().astype(np.float64), self.layout)
                z = proto.passive_forward(self.ops_a, u_bases, h_int, self.share, self.layout)
                reply.z_ciphertexts = crypto.to_bytes(self.ops_a, z)
                if train:
                    v_rows = proto.product_weights(self.share.weights, self.layout).T
                    reply.v_ciphertexts = crypto.to_bytes(
                        self.ops_p, proto.weight_bases(self.ops_p, v_rows, self.layout.backward_layout()))
            if train:
                self.pending = {"epoch": req.epoch, "step": req.step, "h": h, "h_int": h_int, "rows": rows,
                                "done": set()}
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
        needed = {"weight gradient", "input gradient"} if self.paillier else {"input gradient"}
        if needed <= p["done"]:
            self.pending = None
            self.last_step = (p["epoch"], p["step"])

    def weight_gradient(self, req: pb.WeightGradientRequest) -> pb.WeightGradientReply:
        """[h^T D + Q]_A for the active party; this party keeps -Q as its gradient share."""
        with self.lock:
            p = self._pending_for(req, "weight gradient")
            if not self.paillier:
                raise ProtocolError("weight gradient: not used in plaintext mode")
            rows = len(p["rows"])
            per_row = -(-self.layout.m // self.layout.gradient_layout().width)
            d_cts = crypto.from_bytes(self.ops_a, req.delta_ciphertexts, rows * per_row,
                                      "weight gradient.delta_ciphertexts")
            masked, share = proto.passive_weight_gradient(self.ops_a, d_cts, p["h_int"], self.layout)
            t = self.spec.train
            proto.apply_update(self.share, share, rows, t.interactive_lr, t.interactive_momentum,
                               t.weight_decay, self.layout)
            reply = pb.WeightGradientReply(masked_gradient=crypto.to_bytes(self.ops_a, masked))
            p["done"].add("weight gradient")
            self._finish_if_complete(p)
            return reply

    def input_gradient(self, req: pb.InputGradientRequest) -> pb.InputGradientReply:
        """Decrypt this party's input gradient delta W^T and back-propagate the bottom model."""
        with self.lock:
            p = self._pending_for(req, "input gradient")
            rows = len(p["rows"])
            if not self.paillier:
                if len(req.grad_plain) != rows * self.layout.d * 4:
                    raise ProtocolError(f"input gradient: grad_plain must hold {rows}x{self.layout.d} float32 values")
                grad = np.frombuffer(req.grad_plain, dtype="<f4").reshape(rows, self.layout.d).astype(np.float64)
            else:
                bwd = self.layout.backward_layout()
                g_cts = crypto.from_bytes(self.ops_p, req.grad_ciphertexts, bwd.ciphertexts_for(rows),
                                          "input gradient.grad_ciphertexts")
                grad = proto.passive_decode_input_gradient(self.ops_p, g_cts, rows, self.layout)
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
            reply = pb.InputGradientReply()
            return reply

    # ---------------------------------------------------------------- checkpoints and close
    def end_epoch(self, req: pb.EndEpochRequest) -> pb.EndEpochReply:
        with self.lock:
            if self.pending is not None:
                raise OutOfOrder("end of epoch while a training step waits for its gradients")
            path = ""
            if req.checkpoint:
                path = self._peer_visible(self._checkpoint(req.epoch))
            return pb.EndEpochReply(checkpoint=path)

    def _checkpoint(self, epoch: int) -> Path:
        directory = self.job_dir / "checkpoints"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"epoch-{epoch:04d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"epoch": epoch, "bottom": self.bottom.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "bottom_module": self.spec.party(self.party).bottom.module,
                    "share": self.share, "last_step": self.last_step}, tmp)
        tmp.replace(path)
        return path

    def _peer_visible(self, path: Path) -> str:
        """A file of this job as the active party may see it: relative to this node's jobs directory, so its
        layout on this party's disk stays here ("<job_id>/model/party.pt")."""
        return str(path.relative_to(self.node.config.jobs_dir))

    def last_checkpoint(self) -> int:
        directory = self.job_dir / "checkpoints"
        epochs = sorted(int(p.stem.split("-")[1]) for p in directory.glob("epoch-*.pt")) if directory.exists() else []
        return epochs[-1] if epochs else -1

    def _restore(self, epoch: int) -> None:
        path = self.job_dir / "checkpoints" / f"epoch-{epoch:04d}.pt"
        if not path.exists():
            raise OutOfOrder(f"resume: party {self.party!r} has no checkpoint for epoch {epoch}")
        state = torch.load(path, weights_only=False)
        self.bottom.load_state_dict(state["bottom"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.share = state["share"]
        self.last_step = tuple(state["last_step"])

    def close(self, req: pb.CloseJobRequest) -> pb.CloseJobReply:
        with self.lock:
            reply = pb.CloseJobReply()
            if req.save_model and self.data is not None and self.spec.kind == "train":
                reply.model_path = self._peer_visible(self._save_model_part())
            attack_scores = self._attack_scores()
            report = build_report(self.party, "passive", self.spec.job_id, self.ledger.summary(),
                                  self.spec.crypto.key_bits if self.paillier_enabled else 0,
                                  defense=self._declared_defense(),
                                  attacks={"label_inference": "scores sent to the active party for evaluation"}
                                  if attack_scores else None)
            write_report(self.job_dir, report)
            payload = {"report": report, "attack_scores": attack_scores}
            if self.node.config.report_handler_timing:  # its crypto time depends on this party's data
                payload["timing"] = self.timer.summary()
            reply.report_json = json.dumps(payload).encode()
            self.state = "closed"
            return reply

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
        np.savez_compressed(self.job_dir / "recorded_gradients.npz", ids=ids, steps=steps, gradients=grads)
        if not self.spec.privacy.attacks:
            return None
        return {"ids": ids.tolist(), "steps": steps.tolist(), "norm": norm_scores(grads).tolist(),
                "direction": direction_scores(grads, steps).tolist()}

    @property
    def paillier_enabled(self) -> bool:
        return self.spec.crypto.mode == "paillier"

    def _save_model_part(self) -> Path:
        directory = self.job_dir / "model"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "party.pt"
        module = self.spec.party(self.party).bottom.module
        torch.save({"party": self.party, "role": "passive", "bottom": self.bottom.state_dict(),
                    "bottom_module": module,
                    "bottom_factory": self.bottom_factory_path,
                    "share": self.share, "standardizer": self.standardizer,
                    "feature_names": self.data.feature_names}, path)
        (directory / "schema.json").write_text(self.table.schema.to_json())
        return path

    def _model_dir(self) -> Path:
        return self.node.config.job_dir(self.spec.model_job) / "model"

    def _saved_schema(self):
        from vfl.data import Schema
        path = self._model_dir() / "schema.json"
        if not path.exists():
            raise DataError(f"model job {self.spec.model_job!r}: no saved model part at {path.parent}")
        return Schema.from_json(path.read_text())

    def _load_model_part(self) -> dict:
        path = self._model_dir() / "party.pt"
        if not path.exists():
            raise DataError(f"model job {self.spec.model_job!r}: no saved model part at {path}")
        return torch.load(path, weights_only=False)


def spec_init_std(spec: JobSpec, layout: Layout) -> float:
    """Xavier-normal std of the interactive layer, over all parties' bottom outputs."""
    fan_in = sum(p.bottom.out for p in spec.parties)
    return float(np.sqrt(2.0 / (fan_in + spec.interactive_out)))


def encode_int_matrix(values: np.ndarray) -> bytes:
    return json.dumps({"shape": list(values.shape), "values": [str(int(v)) for v in values.reshape(-1)]}).encode()


def decode_int_matrix(data: bytes, shape: tuple[int, int], max_bits: int) -> np.ndarray:
    try:
        obj = json.loads(data)
        values = [int(v) for v in obj["values"]]
        if tuple(obj["shape"]) != shape or len(values) != shape[0] * shape[1]:
            raise ValueError(f"shape {obj['shape']} != {list(shape)}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"setup: invalid masked initial share: {exc}") from None
    if any(abs(v).bit_length() > max_bits for v in values):
        raise ProtocolError(f"setup: masked initial share exceeds {max_bits} bits")
    return np.array(values, dtype=object).reshape(shape)
