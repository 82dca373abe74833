"""A model part loaded for serving from its exported directory (vfl/models/format.py), without its job directory.

`load_served_part(directory, models, party)` checks the export (format, version, the weights' hash: a changed byte
is refused before anything is used), that this party exported it, and that it was trained with Paillier (a
plaintext model has no shares to serve under protection), then rebuilds the runnable module:

* a passive party's bottom model (the default MLP, or this node's own `models:` factory of the same name), which
  turns its online features into activations h;
* the active party's own bottom model, interactive weight, bias and top model (`ActiveModel`), which turns the
  decrypted z_P of every passive party plus its own features into scores.

Each keeps its share of every interactive weight as the exact integers it trained with (never W) and the
fixed-point layout it agreed with each peer (as JSON: the protocol layer parses it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from vfl.data.scaling import Standardizer
from vfl.data.schema import Schema
from vfl.models.format import METADATA, ModelFormatError, load_part, share_from_json, unprefixed
from vfl.models.tasks import Task, make_task


@dataclass(frozen=True)
class MlpArch:
    """An MLP spec as the export's architecture writes it (the fields of vfl.job.spec.MlpSpec)."""
    hidden: tuple[int, ...]
    out: int
    activation: str = "relu"
    dropout: float = 0.0
    module: str | None = None

    @staticmethod
    def of(data: dict | None, where: str) -> "MlpArch":
        if not isinstance(data, dict):
            raise ModelFormatError(f"{where}: missing from the export's architecture")
        try:
            return MlpArch(hidden=tuple(int(h) for h in data.get("hidden") or ()), out=int(data["out"]),
                           activation=str(data.get("activation") or "relu"), dropout=float(data.get("dropout") or 0),
                           module=data.get("module"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{where}: not an MLP spec ({exc})") from None


@dataclass
class ServedPart:
    """What both roles hold: the export's metadata, schema, standardizer, shares and layouts."""
    directory: Path
    meta: dict
    party: str
    role: str
    job_id: str
    task: str
    schema: Schema
    standardizer: Standardizer
    layouts: dict[str, dict]        # peer -> the interactive layer's layout (vfl.protocol.layout.Layout as JSON)
    shares: dict[str, np.ndarray]   # peer -> this party's additive share of W_peer at 2^f_s (Python ints)
    id_strip: bool
    id_lowercase: bool

    @property
    def feature_dim(self) -> int:
        return len(self.schema.feature_names)

    def standardized(self, x: np.ndarray) -> torch.Tensor:
        """Encoded feature rows (the schema's columns) standardized as in training, as a float32 tensor."""
        return torch.from_numpy(self.standardizer.apply(x).astype(np.float32))

    def canonical_id(self, value: str) -> str:
        """An ID as the parties compared them in training (PSI's strip / lowercase)."""
        value = value.strip() if self.id_strip else value
        return value.lower() if self.id_lowercase else value


@dataclass
class PassivePart(ServedPart):
    active: str = ""
    bottom: torch.nn.Module | None = None

    def activations(self, x: np.ndarray) -> np.ndarray:
        """h = bottom(standardized x) for encoded feature rows x (rows x features), float64."""
        with torch.no_grad():
            return self.bottom(self.standardized(x)).numpy().astype(np.float64)


@dataclass
class ActivePart(ServedPart):
    passives: tuple[str, ...] = ()
    model: torch.nn.Module | None = None
    head_task: Task | None = None

    @property
    def outputs(self) -> list[str]:
        """What each score is: P(positive class) (binary), P(class) per class (multiclass), or the value."""
        classes = list(self.schema.label_classes or [])
        if self.task == "binary":
            return [classes[1] if len(classes) == 2 else "positive"]
        if self.task == "multiclass":
            return classes or [str(k) for k in range(self.head_task.num_outputs)]
        return ["prediction"]

    def predict(self, zs: list[np.ndarray], x: np.ndarray | None) -> np.ndarray:
        """Scores (rows x outputs) from every passive party's decrypted z_P and this party's own feature rows."""
        with torch.no_grad():
            # summed as the predict job sums them: each z_P as float32, in party order
            z = sum(torch.from_numpy(np.asarray(zp)).float() for zp in zs) if zs else None
            if self.model.has_bottom:
                own = self.model.own_z(self.standardized(x))
                z = own if z is None else z + own
            prediction = self.head_task.predict(self.model.head(z))
        return prediction.reshape(len(prediction), -1)


def _check_directory(directory: Path) -> None:
    if not (directory / METADATA).exists() and ((directory / "model" / "party.pt").exists()
                                               or (directory / "job.yaml").exists()
                                               or (directory / "accepted-spec.yaml").exists()):
        raise ModelFormatError(f"{directory} is a job directory, not an exported model part: export it first "
                               f"(vfl export {directory.name} --config node.yaml --out DIR) and register DIR, "
                               "or register the job by id (serving.models.NAME.job)")


def _schema(meta: dict, directory: Path) -> Schema:
    if meta.get("schema") is None:
        raise ModelFormatError(f"{directory / METADATA}: the export has no schema (was the job's model saved?)")
    return Schema.from_json(json.dumps(meta["schema"]), f"{directory / METADATA} schema")


def _standardizer(tensors: dict, features: int) -> Standardizer:
    if "standardizer.mean" not in tensors:
        return Standardizer(np.zeros(features), np.ones(features))
    return Standardizer(tensors["standardizer.mean"].numpy().astype(np.float64),
                        tensors["standardizer.scale"].numpy().astype(np.float64))


def _shares(meta: dict, directory: Path) -> dict[str, np.ndarray]:
    crypto = meta.get("crypto") or {}
    shares = meta.get("shares") or {}
    if crypto.get("mode", "paillier") != "paillier" or not shares or any(s is None for s in shares.values()):
        raise ModelFormatError(f"{directory}: job {meta.get('job_id')!r} was trained with crypto.mode "
                               f"{crypto.get('mode', 'plaintext')!r}; online scoring serves models trained with "
                               "Paillier only (their interactive weights are shares)")
    return {peer: share_from_json(rows) for peer, rows in shares.items()}


def _load_state(module: torch.nn.Module, state: dict, what: str, directory: Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFormatError(f"{directory}: the exported {what} does not fit the module built from its "
                               f"architecture (did this node's models: entry change since training?): {exc}") from None


def load_served_part(directory: Path, models: Mapping[str, object], party: str) -> ActivePart | PassivePart:
    """This party's exported part in `directory`, ready to serve; ModelFormatError if it cannot be."""
    from vfl.models.active_model import ActiveModel
    from vfl.models.custom import build_bottom, resolve_factory
    directory = Path(directory)
    _check_directory(directory)
    tensors, meta = load_part(directory)
    if meta.get("party") != party:
        raise ModelFormatError(f"{directory}: exported by party {meta.get('party')!r}, but this node is {party!r}")
    schema = _schema(meta, directory)
    arch = meta.get("architecture") or {}
    ids = meta.get("ids") or {}
    common = dict(directory=directory, meta=meta, party=party, role=meta.get("role"), job_id=str(meta.get("job_id")),
                  task=str(meta.get("task")), schema=schema,
                  standardizer=_standardizer(tensors, len(schema.feature_names)), layouts=dict(meta.get("layout") or {}),
                  shares=_shares(meta, directory), id_strip=bool(ids.get("strip", True)),
                  id_lowercase=bool(ids.get("lowercase", False)))
    bottom = MlpArch.of(arch.get("bottom"), f"{directory / METADATA} architecture.bottom")
    factory = resolve_factory(models, bottom.module, party)
    features = len(schema.feature_names)
    if meta.get("role") == "passive":
        (active,) = common["shares"]
        module = build_bottom(bottom, features, factory, party)
        _load_state(module, unprefixed("bottom", tensors), "bottom model", directory)
        return PassivePart(**common, active=active, bottom=module.eval())
    if meta.get("role") != "active":
        raise ModelFormatError(f"{directory}: role {meta.get('role')!r} is neither active nor passive")
    task = make_task(common["task"], None, arch.get("num_classes"))
    top = MlpArch.of(arch.get("top"), f"{directory / METADATA} architecture.top")
    layout = next(iter(common["layouts"].values()), {})
    model = ActiveModel(bottom, features, int(arch["interactive_out"]), top, task.num_outputs,
                        float(layout.get("activation_bound", 32.0)), party=party, bottom_factory=factory)
    _load_state(model, unprefixed("model", tensors), "active model", directory)
    return ActivePart(**common, passives=tuple(common["shares"]), model=model.eval(), head_task=task)
