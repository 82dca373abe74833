"""`vfl export JOB`: a party's model part of a finished training job, in the exported format (vfl/models/format.py).

The job's own `model/party.pt` is a pickled dict that only this node's vfl may load; the export turns it into
safetensors plus JSON that plain torch and any reader can load without pickle, carrying what a later user needs:
the architecture (or this party's custom-module name), the schema, the standardizer, the interactive layer's
fixed-point layout, the job id and the hashes of the training inputs (from the job's signed lineage).

The export is the user's explicit act of taking the model out of the node: it is written in the clear, wherever
`--out` says (not under jobs_dir, where files are encrypted at rest). Protect it as the model it is.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from vfl.data import sealed
from vfl.errors import DataError
from vfl.job import checkpoint
from vfl.job.spec import interactive_layout, load_job_spec
from vfl.models.format import prefixed, save_part, share_to_json


def _spec_path(job_dir: Path) -> Path:
    for name in ("job.yaml", "accepted-spec.yaml"):   # the active party's, a passive party's
        if (job_dir / name).exists():
            return job_dir / name
    raise DataError(f"job directory {job_dir}: no job spec (job.yaml) found")


def _training_inputs(job_dir: Path) -> dict | None:
    path = job_dir / "lineage.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text()).get("record", {})
    return {"input": record.get("input"), "spec_sha256": record.get("spec_sha256"),
            "lineage_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _standardizer(part: dict) -> dict[str, torch.Tensor]:
    s = part.get("standardizer")
    if s is None:
        return {}
    return {"standardizer.mean": torch.as_tensor(s.mean, dtype=torch.float64),
            "standardizer.scale": torch.as_tensor(s.scale, dtype=torch.float64)}


def export_part(job_dir: Path, out: Path) -> Path:
    """Write this party's exported part of the training job in `job_dir` to `out`."""
    path = checkpoint.model_part_path(job_dir)
    if not path.exists():
        raise DataError(f"job {job_dir.name!r}: no model part at {path} (only a finished training job has one)")
    part = checkpoint.load_torch(path)   # this node's own file, written by this node's vfl (opened if sealed)
    spec = load_job_spec(_spec_path(job_dir))
    schema_path = checkpoint.model_dir(job_dir) / checkpoint.SCHEMA
    role = part.get("role")
    meta = {"party": part.get("party"), "role": role, "job_id": spec.job_id, "task": spec.task,
            "schema": json.loads(sealed.read_text(schema_path)) if schema_path.exists() else None,
            "feature_names": part.get("feature_names"),
            "architecture": {"bottom": asdict(spec.party(part["party"]).bottom),
                             "bottom_module": part.get("bottom_module"), "interactive_out": spec.interactive_out,
                             "top": asdict(spec.top) if role == "active" else None,
                             "num_classes": part.get("num_classes")},
            "training_inputs": _training_inputs(job_dir),
            # how IDs were compared in training (PSI's canonicalization): serving compares them the same way
            "ids": {"strip": spec.psi.strip, "lowercase": spec.psi.lowercase},
            "crypto": {"mode": spec.crypto.mode, "key_bits": spec.crypto.key_bits}}
    if role == "active":
        tensors = {**prefixed("model", part["model"]), **_standardizer(part)}
        shares, layouts = {}, {}
        for peer, state in (part.get("links") or {}).items():
            share = state.get("share")
            shares[peer] = None if share is None else share_to_json(share.weights)
            if state.get("plain") is not None:
                tensors[f"plain_interactive.{peer}"] = state["plain"]
            layouts[peer] = json.loads(interactive_layout(spec, spec.party(peer), spec.train.seed).to_json())
        meta.update(shares=shares, layout=layouts)
    elif role == "passive":
        tensors = {**prefixed("bottom", part["bottom"]), **_standardizer(part)}
        share = part.get("share")
        meta.update(shares={spec.active: None if share is None else share_to_json(share.weights)},
                    layout={spec.active: json.loads(interactive_layout(spec, spec.party(part["party"]),
                                                                       spec.train.seed).to_json())})
    else:
        raise DataError(f"{path}: not a model part of this vfl (role {role!r})")
    return save_part(out, tensors, meta)
