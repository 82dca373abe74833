"""Centralized plaintext training of the same architecture, all columns pooled in one process.

This is the yardstick for encrypted training: the same parties' bottom models, the same clamp, one
interactive weight per party trained with the same SGD with momentum, the same top model, the same ID-based
split and batch order. Only the cryptography is missing.

Paired comparisons also start from the encrypted run's own initial weights (`initial_state`), which only an
evaluation that reads every party's job directory can assemble: each party draws its initial weights from
its own node's randomness, never from the shared job seed (vfl/job/private_random.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfl.job.checkpoint import checkpoint_path, load_torch
from vfl.job.spec import JobSpec
from vfl.job.split import Split, batch_order, effective_batch_size, split_by_id
from vfl.models.custom import build_bottom, resolve_factory
from vfl.models.mlp import build_mlp, init_module
from vfl.models.tasks import make_task
from vfl.protocol.layout import SHARE_FRACTION_BITS


@dataclass
class InitialState:
    """Every party's initial parameters of one encrypted job, from all parties' epoch-0 checkpoints."""
    bottoms: dict[str, dict[str, torch.Tensor]]   # party -> its bottom model's state
    weights: dict[str, np.ndarray]                # party -> its interactive weight (W0 = U0 + V0, or A's own)
    top: dict[str, torch.Tensor]                  # the top model's layers (after its leading ReLU)


class PooledModel(torch.nn.Module):
    """Freshly initialised unless `load_initial` gives it an encrypted run's starting point."""

    def __init__(self, spec: JobSpec, dims: dict[str, int], num_outputs: int,
                 models: dict[str, dict[str, Any]] | None = None):
        super().__init__()
        self.bottoms = torch.nn.ModuleDict()
        self.weights = torch.nn.ParameterDict()
        std = spec.interactive_init_std
        for p in spec.parties:
            if dims.get(p.name, 0) == 0:
                continue
            factory = resolve_factory((models or {}).get(p.name, {}), p.bottom.module, p.name)
            # the nodes' initialisation scheme, seeded from torch's generator (the caller's to seed)
            self.bottoms[p.name] = build_bottom(p.bottom, dims[p.name], factory, p.name, _torch_seed())
            self.weights[p.name] = torch.nn.Parameter(torch.randn(p.bottom.out, spec.interactive_out) * std)
        self.bias = torch.nn.Parameter(torch.zeros(spec.interactive_out))
        self.top = torch.nn.Sequential(torch.nn.ReLU(), build_mlp(spec.interactive_out, spec.top.hidden, num_outputs,
                                                                  spec.top.activation, spec.top.dropout, False))
        init_module(self.top, _torch_seed())
        self.bound = spec.crypto.activation_bound

    def load_initial(self, state: InitialState) -> None:
        with torch.no_grad():
            for name, bottom in self.bottoms.items():
                bottom.load_state_dict(state.bottoms[name])
            for name, weight in state.weights.items():
                self.weights[name].copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)))
            self.top[1].load_state_dict(state.top)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        z = self.bias
        for name, bottom in self.bottoms.items():
            z = z + bottom(x[name]).clamp(-self.bound, self.bound) @ self.weights[name]
        return self.top(z)


def _torch_seed() -> int:
    return int(torch.randint(0, 2**62, ()).item())


def standardize(train_rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    mean = x[train_rows].mean(axis=0) if len(train_rows) else x.mean(axis=0)
    std = x[train_rows].std(axis=0) if len(train_rows) else x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((x - mean) / std).astype(np.float32)


def initial_state(job_dirs: dict[str, Path], active: str) -> InitialState:
    """The initial parameters of a finished encrypted job, from every party's epoch-0 checkpoint.

    W0 of each passive party is rebuilt from both shares (U0 at the active party, V0 at the passive party).
    Only an evaluation with access to every party's job directory can do this; no party can alone.
    """
    def start(party: str) -> dict:
        return load_torch(checkpoint_path(job_dirs[party], 0))

    own = start(active)
    model = own["model"]
    bottoms = {active: _prefixed(model, "bottom.")} if "own_weight" in model else {}
    weights = {active: model["own_weight"].numpy()} if "own_weight" in model else {}
    for party, directory in job_dirs.items():
        if party == active:
            continue
        passive = start(party)
        bottoms[party] = passive["bottom"]
        link = own["links"][party]
        if link["share"] is None:  # plaintext mode: the active party holds W itself
            weights[party] = link["plain"].numpy().astype(np.float32)
        else:
            w = (link["share"].weights + passive["share"].weights).astype(np.float64) / 2.0**SHARE_FRACTION_BITS
            weights[party] = w.astype(np.float32)
    return InitialState(bottoms=bottoms, weights=weights, top=_prefixed(model, "top.1."))


def _prefixed(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def train_centralized(spec: JobSpec, ids: np.ndarray, raw_features: dict[str, np.ndarray], label: np.ndarray,
                      num_classes: int | None = None, initial: InitialState | None = None,
                      models: dict[str, dict[str, Any]] | None = None) -> dict:
    """Train and evaluate; returns {'test': metrics, 'validation': metrics, 'history': [...]}.

    `initial`: start from an encrypted run's initial parameters (`initial_state`), for a paired comparison;
    without it the model starts from a fresh random initialisation.
    `models` gives each party's own bottom models, as its node config's `models:` does
    ({party: {name: factory or "package.module:factory"}}), for parties whose spec names a `module`.
    """
    split: Split = split_by_id([str(i) for i in ids], spec.split.validation, spec.split.test, spec.split.seed)
    features = {name: standardize(split.train, np.asarray(x, dtype=np.float64)) for name, x in raw_features.items()}
    task = make_task(spec.task, label, num_classes)
    model = PooledModel(spec, {k: v.shape[1] for k, v in features.items()}, task.num_outputs, models)
    if initial is not None:
        model.load_initial(initial)
    adam = list(model.top.parameters()) + [p for b in model.bottoms.values() for p in b.parameters()]
    sgd = [model.bias] + list(model.weights.values())
    t = spec.train
    optimizers = [torch.optim.Adam(adam, lr=t.lr),
                  torch.optim.SGD(sgd, lr=t.interactive_lr, momentum=t.interactive_momentum)]

    def batch(rows: np.ndarray) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v[rows]) for k, v in features.items()}

    def evaluate(rows: np.ndarray) -> dict[str, float]:
        if not len(rows):
            return {}
        model.eval()
        with torch.no_grad():
            return task.metrics(task.predict(model(batch(rows))), label[rows])

    history = []
    batch_size = effective_batch_size(t.batch_size, len(split.train))
    for epoch in range(t.epochs):
        model.train()
        for rows in batch_order(ids, split.train, batch_size, epoch, t.seed):
            loss = task.loss(model(batch(rows)), torch.from_numpy(np.asarray(label[rows])))
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            for opt in optimizers:
                opt.step()
        history.append({"epoch": epoch + 1, **{f"validation_{k}": v for k, v in evaluate(split.validation).items()}})
    return {"test": evaluate(split.test), "validation": evaluate(split.validation), "history": history,
            "split": split.sizes()}
