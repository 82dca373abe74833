"""The exported model-part format: safetensors for the tensors, JSON for everything else, no pickle anywhere.

A directory holds one party's part of one trained model:

    weights.safetensors   every tensor (the bottom model; at the active party also the interactive and top layers;
                          the standardizer's mean and scale), loadable with `safetensors.torch.load_file`
    model.json            {"format": "vfl-model-part", "version": 1, "weights_sha256": ..., "party", "role",
                           "job_id", "task", "architecture", "schema", "feature_names", "layout", "shares",
                           "training_inputs", ...}

The interactive weight stays split: each party's export holds only its own additive share of W, as the integers
it trained with (decimal strings: they are wider than any tensor type), never W itself. Loading checks the format,
its version and the weights' SHA-256, so a changed byte is refused before anything is used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfl.errors import DataError

FORMAT = "vfl-model-part"
VERSION = 1
WEIGHTS = "weights.safetensors"
METADATA = "model.json"


class ModelFormatError(DataError):
    """An exported model part that is not one, is of an unknown version, or was changed after export."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def share_to_json(weights: np.ndarray) -> list[list[str]]:
    """An additive share of W (an object array of Python integers) as decimal strings, exactly."""
    return [[str(int(v)) for v in row] for row in np.asarray(weights, dtype=object)]


def share_from_json(rows: list[list[str]]) -> np.ndarray:
    out = np.empty((len(rows), len(rows[0]) if rows else 0), dtype=object)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            out[i, j] = int(value)
    return out


def save_part(directory: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Write weights.safetensors and model.json (the metadata plus format, version and the weights' hash)."""
    from safetensors.torch import save_file

    from vfl.data.atomic import atomic_write, atomic_write_text
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS
    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_write(weights, lambda tmp: save_file(contiguous, tmp, metadata={"format": FORMAT,
                                                                           "version": str(VERSION)}))
    document = {"format": FORMAT, "version": VERSION, "weights_sha256": _sha256(weights), **metadata}
    atomic_write_text(directory / METADATA, json.dumps(document, indent=1, sort_keys=True, default=str))
    return directory


def load_part(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of an exported part; ModelFormatError if it is not one or was changed."""
    from safetensors.torch import load_file
    meta_path, weights = directory / METADATA, directory / WEIGHTS
    if not meta_path.exists() or not weights.exists():
        raise ModelFormatError(f"{directory}: not an exported model part (needs {METADATA} and {WEIGHTS}; "
                               "`vfl export JOB` writes them)")
    try:
        metadata = json.loads(meta_path.read_text())
    except ValueError:
        raise ModelFormatError(f"{meta_path}: not JSON") from None
    if metadata.get("format") != FORMAT:
        raise ModelFormatError(f"{meta_path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("version") != VERSION:
        raise ModelFormatError(f"{meta_path}: format version {metadata.get('version')!r}; this vfl reads version "
                               f"{VERSION} (export the model again with this vfl, or use the vfl that wrote it)")
    if _sha256(weights) != metadata.get("weights_sha256"):
        raise ModelFormatError(f"{weights}: changed since export (its SHA-256 does not match {METADATA}); "
                               "refusing to load it")
    return load_file(str(weights)), metadata


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": tensor for name, tensor in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {name[start:]: t for name, t in tensors.items() if name.startswith(prefix + ".")}
