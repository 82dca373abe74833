"""The active party's job runtime: drives PSI, set-up, training, evaluation and saving, step by step.

Every job runs exactly one PSI session (passive nodes refuse any other): intersection mode for train, predict
and psi jobs, cardinality mode for cardinality jobs, which end there.

Runs in its own thread at the active node. Every stage reports progress and per-epoch metrics as events,
which `vfl run` and the Python API show as progress bars.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from vfl.data.atomic import atomic_write, atomic_write_text
from vfl.data.id_shape import note_for_active, parse_shape
from vfl.errors import ConfigError, DataError, JobFailed, PeerCallError, VflError, shorten
from vfl.job import checkpoint, status
from vfl.job.caps import check_parameters
from vfl.job.events import EventLog
from vfl.job.ledger import WireLedger
from vfl.job.network import PeerNetwork
from vfl.job.lineage import record_job_lineage
from vfl.job.party_data import align, audit_for_job, load_alignment, load_dataset, save_alignment
from vfl.job.peer import ActivePeer
from vfl.job.private_random import PrivateRandom, for_node
from vfl.job.spec import EVAL_BATCH_ROWS, JobSpec, interactive_layout
from vfl.job.split import batch_order
from vfl.job.timing import Timer
from vfl.models.custom import build_bottom, check_saved_module, load_part, resolve_factory
from vfl.models.mlp import build_mlp, init_module
from vfl.models.tasks import make_task
from vfl.protocol.schemes import scheme_for

log = logging.getLogger("vfl.active")

MAX_RESUMES = 3


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


class ActiveModel(torch.nn.Module):
    """The active party's plaintext part: its own bottom model and interactive weight, bias and top model."""

    def __init__(self, spec: JobSpec, feature_dim: int, num_outputs: int, private: PrivateRandom,
                 bottom_factory=None):
        super().__init__()
        own = spec.party(spec.active).bottom
        self.has_bottom = feature_dim > 0
        # every initial weight is this party's secret: drawn from its own node, never from the spec's seed
        private.seed_torch("torch")
        if self.has_bottom:
            self.bottom = build_bottom(own, feature_dim, bottom_factory, spec.active, private.seed("bottom"))
            own_weight = torch.randn(own.out, spec.interactive_out,
                                     generator=torch.Generator().manual_seed(private.seed("own-weight")))
            self.own_weight = torch.nn.Parameter(own_weight * spec.interactive_init_std)
        self.bias = torch.nn.Parameter(torch.zeros(spec.interactive_out))
        top = spec.top
        self.top = torch.nn.Sequential(torch.nn.ReLU(), build_mlp(spec.interactive_out, top.hidden, num_outputs,
                                                                  top.activation, top.dropout, False))
        init_module(self.top, private.seed("top"))
        self.bound = spec.crypto.activation_bound

    def own_z(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.has_bottom:
            return None
        return self.bottom(x).clamp(-self.bound, self.bound) @ self.own_weight

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.top(z + self.bias)

    def optimizers(self, spec: JobSpec) -> list[torch.optim.Optimizer]:
        t = spec.train
        adam = list(self.top.parameters()) + (list(self.bottom.parameters()) if self.has_bottom else [])
        sgd = [self.bias] + ([self.own_weight] if self.has_bottom else [])
        return [torch.optim.Adam(adam, lr=t.lr),
                torch.optim.SGD(sgd, lr=t.interactive_lr, momentum=t.interactive_momentum)]


class ActiveJob:
    """The job at its active party. `network` reaches the passive parties: the node's gRPC links and PSI, or, in
    tests, runtimes in this process (tests/job/local.py)."""

    def __init__(self, node, spec: JobSpec, events: EventLog, network: PeerNetwork, defense=None):
        self.node = node
        if spec.kind == "predict":
            spec = inherit_model_settings(spec, node.config.job_dir(spec.model_job) / "job.yaml")
        self.spec = spec
        self.events = events
        self.job_dir: Path = node.config.job_dir(spec.job_id)
        self.ledger = WireLedger()
        self.timer = Timer()
        self.network = network
        self.links = {p.name: ActivePeer(p.name, network.link(p.name), spec, self.ledger, self.timer,
                                         node.config.workers) for p in spec.passives}
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.links)), thread_name_prefix=f"{spec.job_id}-link")
        self.metrics_history: list[dict] = []
        self.defense = defense
        self.epochs_started = 0  # for the DP accountant: a resumed epoch releases its gradients again
        self.bottom_factory = None  # this party's own bottom model factory, if the job names one
        self.bottom_factory_path = None
        self._psi_progress_at = 0.0
        self.warnings: list[str] = []  # for the result: e.g. why PSI found few common IDs
        self.stage = "open"  # the stage of the last event: a failure names it
        self.committed = False  # this party's own commit began (the close's second phase)

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
            atomic_write_text(self.job_dir / "job.yaml", spec.to_yaml(), "job spec", spec.active)
            status.write_status(self.job_dir, spec.active, job_id=spec.job_id, kind=spec.kind, role="active",
                                active=spec.active, state=status.RUNNING, stage="open")
            self._open()
            if spec.kind == "cardinality":  # one cardinality session, and the job is done: no IDs, no rows
                result = {"job_id": spec.job_id, "intersection": self._cardinality()}
            else:
                self._psi()
                if spec.kind == "psi":
                    ids, _ = load_alignment(self.job_dir)
                    result = {"job_id": spec.job_id, "intersection": len(ids),
                              "aligned_ids": str(self.job_dir / "aligned_ids.json")}
                else:
                    self.stage = "setup"
                    self._setup()
                    self.stage = spec.kind
                    result = self._train() if spec.kind == "train" else self._predict()
            if self.warnings:
                result["warnings"] = self.warnings
            result["seconds"] = round(time.time() - t0, 2)
            self.stage = "close"
            self._close_succeeded(result)
            self.emit("result", f"job {spec.job_id} finished in {result['seconds']} s", stage="done",
                      metrics=result, done=True)
            return result
        except Exception as exc:
            message = str(exc) if isinstance(exc, VflError) else shorten(f"{type(exc).__name__}: {exc}")
            message = f"{message} (stage {self.stage})"
            log.exception("job %s failed", spec.job_id) if not isinstance(exc, VflError) else None
            self._close_unsuccessful(status.FAILED, message, self._reason_for_peers(exc))
            self.emit("error", message, stage=self.stage, failed=True, done=True)
            raise
        finally:
            self.pool.shutdown(wait=False)

    def _open(self) -> None:
        spec = self.spec
        self.emit("log", f"opening job {spec.job_id} at {', '.join(self.links)}", stage="open")
        dataset = self.node.dataset(spec.party(spec.active).dataset)
        if spec.kind == "train" and not dataset.label:
            raise DataError(f"dataset {dataset.name!r} of active party {spec.active!r} declares no label column")
        audit_for_job(dataset, self.job_dir, self.node.config.policy.allow_pii_columns,
                      uses_features=spec.kind in ("train", "predict"))
        schema = None
        if spec.kind == "predict":
            from vfl.data import Schema
            schema = Schema.from_json((self._model_dir() / checkpoint.SCHEMA).read_text())
        # a PSI-only job never reads the label, so it must not refuse one that does not fit spec.task
        self.table = load_dataset(dataset, spec.task, schema=schema, with_label=spec.kind in ("train", "predict"))
        classes = max(1, len(self.table.schema.label_classes or ())) if spec.task == "multiclass" else 1
        check_parameters(spec, self.node.config.policy, spec.active, int(self.table.features.shape[1]), classes)
        # This node's own bottom model, if the job names one: resolved from this node's config only, and
        # checked by a dry forward now, before any peer is contacted.
        own = spec.party(spec.active).bottom
        models = self.node.models()
        self.bottom_factory_path = models.get(own.module) if own.module else None
        self.bottom_factory = resolve_factory(models, own.module, spec.active)
        if own.module is not None and self.table.features.shape[1] > 0:
            build_bottom(own, int(self.table.features.shape[1]), self.bottom_factory, spec.active)
        spec_yaml = spec.to_yaml()
        replies = self.each_link(lambda link: link.open(spec_yaml))
        self.peer_rows = {name: reply.rows for name, reply in zip(self.links, replies)}
        self.peer_shapes = {name: parse_shape(reply.id_shape, name) for name, reply in zip(self.links, replies)}
        for name, reply in zip(self.links, replies):
            self.emit("log", f"{name}: {reply.rows} rows, {reply.feature_dim} features", stage="open")

    def _psi_progress(self, stage: str, done: int, total: int) -> None:
        now = time.time()
        if now - self._psi_progress_at > 0.5 or done >= total:  # at most two events a second
            self._psi_progress_at = now
            self.emit("progress", stage="psi", progress=done / max(total, 1),
                      metrics={"psi_stage": stage, "done": done, "total": total})

    def _run_psi(self, ids: list[str]):
        """The job's one PSI session with all passives, in the mode and canonicalization its spec fixes."""
        return self.network.run_psi(self.spec, ids, self.ledger, self._psi_progress)

    def _psi(self) -> None:
        self.emit("log", "PSI: aligning rows", stage="psi")
        result = self._run_psi([str(i) for i in self.table.ids])
        ids, own_rows = np.array(result.ids, dtype=object), np.asarray(result.rows, dtype=np.int64)
        save_alignment(self.job_dir, ids, own_rows, self.spec.active)
        self.emit("log", f"PSI: {len(ids)} common IDs (active party has {len(self.table)})", stage="psi",
                  metrics={"intersection": len(ids)})
        note = self._id_note(len(ids))
        if len(ids) == 0 and self.spec.kind != "psi":   # a PSI-only job reports 0; the others have no rows to use
            what = "nothing to train on" if self.spec.kind == "train" else "nothing to predict"
            raise DataError(f"PSI found no common IDs between the parties: {what}" + (f"; {note}" if note else ""))
        self._warn_ids(len(ids), note)

    def _cardinality(self) -> int:
        self.emit("log", "PSI (cardinality): counting common IDs", stage="psi")
        size = self._run_psi([str(i) for i in self.table.ids]).size
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
        spec = self.spec
        ids, own_rows = load_alignment(self.job_dir)
        saved = torch.load(self._model_dir() / checkpoint.MODEL_PART, weights_only=False) \
            if spec.kind == "predict" else None
        self.data, self.standardizer = align(self.table, ids, own_rows, spec,
                                             standardizer=saved["standardizer"] if saved else None)
        labels = self.data.label
        if spec.kind == "train":
            num_classes = len(self.table.schema.label_classes) if spec.task == "multiclass" else None
            self.task = make_task(spec.task, labels, num_classes)
        else:
            self.task = make_task(spec.task, None, saved["num_classes"])
        if saved is not None:
            check_saved_module(saved, spec.party(spec.active).bottom.module, spec.model_job, spec.active)
        self.private = for_node(self.node.config, spec.active)
        self.model = ActiveModel(spec, self.data.feature_dim, self.task.num_outputs, self.private, self.bottom_factory)
        self.optimizers = self.model.optimizers(spec)
        self._setup_links(restored=saved["links"] if saved else None)
        if saved:
            load_part(self.model, saved["model"], spec.party(spec.active).bottom, spec.model_job, spec.active)
        self.emit("log", f"set up: split {self.data.split.sizes()}", stage="setup",
                  metrics={"split": self.data.split.sizes()})

    def _setup_links(self, restored: dict | None) -> None:
        """Fresh keys, then Setup with every passive party (restored shares on resume or prediction)."""
        spec = self.spec
        c = spec.crypto
        scheme = scheme_for(c.mode)
        if scheme.encrypted:
            self.emit("log", f"generating a fresh {c.key_bits}-bit {c.mode} key", stage="setup")
        own_key = scheme.new_active_key(c.key_bits, self.node.config.workers)
        rows = len(self.data.ids)

        def setup_link(link: ActivePeer) -> None:
            layout = interactive_layout(spec, spec.party(link.peer), spec.train.seed)
            state = copy.deepcopy(restored[link.peer]) if restored else None
            # one stream per link: the links set up concurrently, and each half must not depend on the order
            rng = self.private.numpy(f"interactive-half:{link.peer}")
            link.setup(layout, own_key, rows, spec.interactive_init_std, rng, restored=state)
        self.each_link(setup_link)

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

    def _train(self) -> dict:
        """Epoch loop with a checkpoint after every epoch at every party (and one before the first).

        If a passive node fails mid-epoch (killed, restarted, unreachable), the job waits for it, rolls every
        party back to the last completed epoch and carries on from there: nothing completed is lost.
        """
        spec = self.spec
        split = self.data.split
        epochs = spec.train.epochs
        completed, resumes = 0, 0
        self._end_epoch(0)
        while completed < epochs:
            try:
                self._run_epoch(completed)
            except PeerCallError as exc:
                if not exc.recoverable or resumes >= MAX_RESUMES or not spec.train.checkpoint:
                    raise
                resumes += 1
                self.emit("log", f"{exc}; waiting up to {self.node.config.timeouts.resume_wait_seconds:g} s for "
                                 f"{exc.peer} to resume from epoch {completed}", stage="train")
                self._resume(completed)
                continue
            completed += 1
            self._end_epoch(completed)
            metrics = self.metrics_history[-1]
            self.emit("epoch", f"epoch {completed}/{epochs}: " +
                      ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
                      stage="train", metrics=metrics)
        self.stage = "evaluate"
        test = self.evaluate(split.test, epochs) if len(split.test) else {}
        if spec.privacy.attacks and spec.task != "regression" and len(split.test):
            self.membership = self._membership_auc()  # needs the passive parties, so before closing
        self.emit("log", "test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()), stage="evaluate",
                  metrics=test)
        return {"job_id": spec.job_id, "task": spec.task, "test": test, "history": self.metrics_history,
                "split": split.sizes(), "intersection": int(len(self.data.ids)), "resumes": resumes,
                "model_dir": str(self._own_model_dir())}

    def _run_epoch(self, epoch: int) -> None:
        self.epochs_started += 1
        spec = self.spec
        split = self.data.split
        batches = batch_order(self.data.ids, split.train, spec.train.batch_size, epoch, spec.train.seed)
        losses = []
        t0 = time.time()
        for step, rows in enumerate(batches):
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

    def _resume(self, completed: int) -> None:
        """Wait for every passive party, reopen the job at its checkpoint, restore our own, set up again."""
        spec_yaml = self.spec.to_yaml()
        wait = self.node.config.timeouts.resume_wait_seconds
        deadline = time.time() + wait
        for link in self.links.values():
            while True:
                try:
                    reply = link.open(spec_yaml, resume_epoch=completed)
                    break
                except PeerCallError as exc:
                    if not exc.recoverable:
                        raise
                    if time.time() > deadline:
                        raise JobFailed(f"peer {link.peer!r} did not come back within {wait:g} s (node config "
                                        f"timeouts.resume_wait_seconds) to resume from epoch {completed}; its "
                                        f"last answer: {exc.method} failed with {exc.code}: {exc.detail}") from None
                    time.sleep(1.0)
            if reply.resumable_epoch < completed:
                raise JobFailed(f"{link.peer} has no checkpoint of epoch {completed}; cannot resume")
        state = checkpoint.load_checkpoint(self.job_dir, completed, self.spec.active)
        self.model.load_state_dict(state["model"])
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        self.metrics_history[:] = state["history"]
        self._setup_links(restored=state["links"])
        self.emit("log", f"resumed from epoch {completed} with fresh keys", stage="train")

    def predict_rows(self, positions: np.ndarray, phase: str, epoch: int) -> np.ndarray:
        self.model.eval()
        outputs = []
        with torch.no_grad():
            for i, start in enumerate(range(0, len(positions), EVAL_BATCH_ROWS)):
                rows = positions[start:start + EVAL_BATCH_ROWS]
                out, _ = self._forward(rows, phase, epoch, i)
                outputs.append(self.task.predict(out))
        return np.concatenate(outputs) if outputs else np.zeros(0)

    def evaluate(self, positions: np.ndarray, epoch: int) -> dict[str, float]:
        prediction = self.predict_rows(positions, "eval", epoch)
        return self.task.metrics(prediction, np.asarray(self.data.label[positions]))

    # ------------------------------------------------------------------ prediction job
    def _predict(self) -> dict:
        positions = np.arange(len(self.data.ids))
        prediction = self.predict_rows(positions, "predict", 0)
        out = self.job_dir / "predictions.csv"  # staged until the job commits
        import pandas as pd
        frame = pd.DataFrame({"id": [str(i) for i in self.data.ids]})
        if prediction.ndim == 2:
            for k in range(prediction.shape[1]):
                frame[f"p{k}"] = prediction[:, k]
        else:
            frame["prediction"] = prediction
        atomic_write(checkpoint.staged(self.job_dir, out), lambda tmp: frame.to_csv(tmp, index=False), "predictions",
                     self.spec.active)
        result = {"job_id": self.spec.job_id, "predictions": str(out), "rows": len(frame)}
        if self.data.label is not None and len(self.data.label):
            result["metrics"] = self.task.metrics(prediction, np.asarray(self.data.label))
        return result

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
        replies = dict(zip(self.links, self.each_link(lambda link: link.close("succeeded", save, "prepare"))))
        result["model_parts"] = {name: r.model_path for name, r in replies.items()}
        result["timing"] = {spec.active: self.timer.summary()}
        for name, reply in replies.items():
            result["timing"][name] = json.loads(reply.report_json or b"{}").get("timing", {})
        if save:
            result["model_parts"][spec.active] = str(checkpoint.model_part_path(self.job_dir))
        result["privacy"] = self._privacy_report(replies, result)
        status.write_status(self.job_dir, spec.active, state=status.COMMITTING, stage="close")
        # the decision is made: a commit is repeated until the party is back (it commits from its disk)
        self.each_link(lambda link: self._until_back(link, lambda: link.close("succeeded", save, "commit"), "commit"))
        atomic_write_text(self.job_dir / "result.json", json.dumps(result, indent=1, default=str), "job result",
                          spec.active)
        self.committed = True
        checkpoint.commit_staged(self.job_dir, spec.active)
        status.write_status(self.job_dir, spec.active, state=status.SUCCEEDED, stage="done")
        record_job_lineage(self.node, spec, self.job_dir, "active", metrics=lineage_metrics(result))

    def _until_back(self, link: ActivePeer, call, what: str):
        """`call()`, repeated while `link`'s peer is unreachable, for up to timeouts.resume_wait_seconds."""
        wait = self.node.config.timeouts.resume_wait_seconds
        deadline = time.time() + wait
        while True:
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
            (self.job_dir / "result.json").unlink(missing_ok=True)
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
        report = build_report(self.spec.active, "active", self.spec.job_id, self.ledger.summary(),
                              self.spec.crypto.key_bits if scheme_for(self.spec.crypto.mode).encrypted else 0,
                              defense=defense, attacks=attacks, test_metrics=result.get("test", {}))
        write_report(self.job_dir, report)
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
