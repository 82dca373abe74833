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
from vfl.job import checkpoint
from vfl.job.caps import check_parameters
from vfl.job.events import EventLog
from vfl.job.ledger import WireLedger
from vfl.job.network import PeerNetwork
from vfl.job.lineage import record_job_lineage
from vfl.job.party_data import align, audit_for_job, load_alignment, load_dataset, save_alignment
from vfl.job.peer import ActivePeer
from vfl.job.private_random import PrivateRandom, for_node
from vfl.job.spec import EVAL_BATCH_ROWS, JobSpec, interactive_layout
from vfl.job.split import batch_order, effective_batch_size
from vfl.job.stopping import Stopping
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
                                         node.compute) for p in spec.passives}
        self.own_key = None  # this party's key for the job, from set-up on; closed when the job ends
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.links)), thread_name_prefix=f"{spec.job_id}-link")
        self.metrics_history: list[dict] = []
        self.defense = defense
        self.epochs_started = 0  # for the DP accountant: a resumed epoch releases its gradients again
        self.bottom_factory = None  # this party's own bottom model factory, if the job names one
        self.bottom_factory_path = None
        self._psi_progress_at = 0.0
        self.warnings: list[str] = []  # for the result: e.g. why PSI found few common IDs
        self.batch_size = spec.train.max_batch_size  # training jobs size it to the table at set-up
        self.stage = "open"  # the stage of the last event: a failure names it

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
            self.job_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.job_dir / "job.yaml", spec.to_yaml())
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
            # where this party's heavy work ran (on Ray: its nodes and how many tasks each has run for this node)
            result["compute"] = self.node.compute.describe()
            result["seconds"] = round(time.time() - t0, 2)
            self.stage = "close"
            self._close("succeeded", save=spec.kind == "train", result=result)
            atomic_write_text(self.job_dir / "result.json", json.dumps(result, indent=1, default=str))
            record_job_lineage(self.node, spec, self.job_dir, "active", metrics=lineage_metrics(result))
            self.emit("result", f"job {spec.job_id} finished in {result['seconds']} s", stage="done",
                      metrics=result, done=True)
            return result
        except Exception as exc:
            message = str(exc) if isinstance(exc, VflError) else shorten(f"{type(exc).__name__}: {exc}")
            message = f"{message} (stage {self.stage})"
            log.exception("job %s failed", spec.job_id) if not isinstance(exc, VflError) else None
            try:
                self._close("failed", save=False, result={"error": message})
            except Exception:  # noqa: BLE001 - the original failure is what the user needs to see
                pass
            self.emit("error", message, stage=self.stage, failed=True, done=True)
            raise
        finally:
            self.pool.shutdown(wait=False)
            self._close_key()

    def _close_key(self) -> None:
        """End the job's key (on Ray, its key holders end with it)."""
        key, self.own_key = self.own_key, None
        if key is not None:
            key.close()

    def _open(self) -> None:
        spec = self.spec
        self.emit("log", f"opening job {spec.job_id} at {', '.join(self.links)}", stage="open")
        dataset = self.dataset = self.node.dataset(spec.party(spec.active).dataset)
        if spec.kind == "train" and not dataset.label:
            raise DataError(f"dataset {dataset.name!r} of active party {spec.active!r} declares no label column")
        audit_for_job(dataset, self.job_dir, self.node.config.policy.allow_pii_columns,
                      uses_features=spec.kind in ("train", "predict"))
        schema = None
        if spec.kind == "predict":
            from vfl.data import Schema
            schema = Schema.from_json((self._model_dir() / checkpoint.SCHEMA).read_text())
        # a PSI-only job never reads the label, so it must not refuse one that does not fit spec.task
        self.table = load_dataset(dataset, spec.task, schema=schema, with_label=spec.kind in ("train", "predict"),
                                  positive_class=spec.positive_class)
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
        spec_yaml = spec.for_peers().to_yaml()  # the positive class stays here
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
        save_alignment(self.job_dir, ids, own_rows)
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
        self.own_rows = own_rows
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
        if spec.kind == "train":
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
        stopping = Stopping.of(spec.train.early_stopping, spec.task) if spec.train.early_stopping else None
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
            if stopping is not None and stopping.should_stop(self.metrics_history):
                break
        result = {"job_id": spec.job_id, "task": spec.task, "batch_size": self.batch_size, "epochs_run": completed}
        if stopping is not None:
            result["early_stopping"] = self._keep_best_epoch(stopping, completed)
        self.stage = "evaluate"
        test, test_prediction = {}, None
        if len(split.test):
            test_prediction = self.predict_rows(split.test, "eval", epochs)
            test = self.task.metrics(test_prediction, np.asarray(self.data.label[split.test]))
        if spec.privacy.attacks and spec.task != "regression" and len(split.test):
            self.membership = self._membership_auc()  # needs the passive parties, so before closing
        self.emit("log", "test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()), stage="evaluate",
                  metrics=test)
        if spec.task == "binary":
            result["positive_class"] = self.table.schema.label_classes[1]
        result.update({"test": test, "history": self.metrics_history, "split": split.sizes(),
                       "intersection": int(len(self.data.ids)), "resumes": resumes,
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
            out["learning_curves"] = str(plots.write_learning_curves(
                self.metrics_history, self.job_dir / plots.LEARNING_CURVES, kept_epoch))
            if self.spec.task == "binary" and test_prediction is not None:
                labels = np.asarray(self.data.label[self.data.split.test])
                if len(np.unique(labels)) == 2:
                    plots.write_roc(labels, test_prediction, self.job_dir / plots.ROC,
                                    self.table.schema.label_classes[1])
                    out["roc"] = str(self.job_dir / plots.ROC)
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
        state = self._reopen_at(completed)
        self.metrics_history[:] = state["history"]
        self.emit("log", f"resumed from epoch {completed} with fresh keys", stage="train")

    def _go_back_to(self, epoch: int) -> None:
        """Every party's parameters as they were after `epoch` (early stopping); the history stays whole."""
        self._reopen_at(epoch)
        self.emit("log", f"every party is back at epoch {epoch} (fresh keys)", stage="train")

    def _reopen_at(self, completed: int) -> dict:
        """Reopen every passive party at its checkpoint of epoch `completed`, load ours, set up the links again with
        fresh keys; returns our checkpoint."""
        spec_yaml = self.spec.for_peers().to_yaml()
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
        self._setup_links(restored=state["links"])
        return state

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
        out = self.job_dir / "predictions.csv"
        frame = prediction_frame(self.dataset.id_column, self.table.written_ids[self.own_rows], prediction)
        atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
        unmatched = len(self.table) - len(frame)
        if unmatched:
            self.emit("log", f"{unmatched} of the {len(self.table)} rows of dataset {self.dataset.name!r} have no "
                             "prediction: their IDs are not at every party (PSI found no match)", stage="predict")
        result = {"job_id": self.spec.job_id, "predictions": str(out), "rows": len(frame),
                  "id_column": self.dataset.id_column, "unmatched_rows": unmatched}
        if self.spec.task == "binary":
            result["positive_class"] = self.table.schema.label_classes[1]
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
            "history": self.metrics_history})

    def _close(self, status: str, save: bool, result: dict) -> None:
        if save:
            own = self.spec.party(self.spec.active).bottom
            path = checkpoint.save_torch(checkpoint.model_part_path(self.job_dir), {
                "party": self.spec.active, "role": "active", "model": self.model.state_dict(),
                "bottom_module": own.module, "bottom_factory": self.bottom_factory_path,
                "links": self._link_state(), "standardizer": self.standardizer,
                "num_classes": self.task.num_classes, "task": self.task.kind})
            atomic_write_text(path.parent / checkpoint.SCHEMA, self.table.schema.to_json())
        replies = {}
        for name, link in self.links.items():
            try:
                replies[name] = link.close(status, save)
            except PeerCallError as exc:
                if status == "succeeded":
                    raise
                log.warning("closing job at %s failed: %s", name, exc)
        result["model_parts"] = {name: r.model_path for name, r in replies.items()}
        result["timing"] = {self.spec.active: self.timer.summary()}
        for name, reply in replies.items():
            result["timing"][name] = json.loads(reply.report_json or b"{}").get("timing", {})
        if save:
            result["model_parts"][self.spec.active] = str(checkpoint.model_part_path(self.job_dir))
        if status == "succeeded":
            result["privacy"] = self._privacy_report(replies, result)

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
