"""Where a party keeps a job's checkpoints and model part, and how they are written: atomically, always.

A checkpoint is written to a temp file in the same folder, flushed, then renamed into place
(vfl.data.atomic), so a crash or a full disk never leaves a half-written file where a resume would read it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vfl.data.atomic import atomic_write
from vfl.errors import OutOfOrder

CHECKPOINTS = "checkpoints"
MODEL = "model"
MODEL_PART = "party.pt"
SCHEMA = "schema.json"


def checkpoint_path(job_dir: Path, epoch: int) -> Path:
    """The checkpoint after `epoch` completed epochs (epoch 0: the initial state, before any training)."""
    return job_dir / CHECKPOINTS / f"epoch-{epoch:04d}.pt"


def save_torch(path: Path, state: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def save_checkpoint(job_dir: Path, epoch: int, state: dict[str, Any]) -> Path:
    return save_torch(checkpoint_path(job_dir, epoch), {"epoch": epoch, **state})


def load_checkpoint(job_dir: Path, epoch: int, party: str) -> dict[str, Any]:
    path = checkpoint_path(job_dir, epoch)
    if not path.exists():
        raise OutOfOrder(f"resume: party {party!r} has no checkpoint for epoch {epoch}")
    return torch.load(path, weights_only=False)


def last_checkpoint(job_dir: Path) -> int:
    """The latest epoch with a checkpoint, -1 if none."""
    directory = job_dir / CHECKPOINTS
    if not directory.exists():
        return -1
    epochs = sorted(int(p.stem.split("-")[1]) for p in directory.glob("epoch-*.pt"))
    return epochs[-1] if epochs else -1


def model_dir(job_dir: Path) -> Path:
    return job_dir / MODEL


def model_part_path(job_dir: Path) -> Path:
    return job_dir / MODEL / MODEL_PART
