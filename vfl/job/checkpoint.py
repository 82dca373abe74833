"""Where a party keeps a job's checkpoints and model part, and how they are written: atomically, always.

Every file goes through the one atomic writer (vfl.data.atomic): a temp file in the same folder, fsynced, then
renamed into place, so a crash or a full disk never leaves a half-written file where a resume would read it. On a
node with encryption at rest the writer seals them (vfl/data/sealed.py), and `load_torch` opens them.

The artifacts a job ends with (its model part and schema, a prediction job's predictions) are first written to
`<job>/staged/` when the active party asks every party to prepare its close, and moved into place only when it
commits (vfl/job/active.py `_close_succeeded`): a party never shows a model of a job that failed at another party.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from vfl.data import sealed
from vfl.data.atomic import fsync_dir, atomic_write_bytes, serialized, storage_error
from vfl.errors import OutOfOrder

CHECKPOINTS = "checkpoints"
MODEL = "model"
MODEL_PART = "party.pt"
SCHEMA = "schema.json"
STAGED = "staged"
#: what a failed commit of each staged file is called in its error
ARTIFACT_KINDS = {MODEL_PART: "model part", SCHEMA: "model schema", "result.json": "job result",
                  "predictions.csv": "predictions"}


def checkpoint_path(job_dir: Path, epoch: int) -> Path:
    """The checkpoint after `epoch` completed epochs (epoch 0: the initial state, before any training)."""
    return job_dir / CHECKPOINTS / f"epoch-{epoch:04d}.pt"


def save_torch(path: Path, state: dict[str, Any], kind: str = "model part", party: str | None = None) -> Path:
    """torch.save into memory, then the atomic writer: disk errors are StorageErrors naming `kind` and `party`."""
    import torch  # here, not at import: a node that only lists or recovers its jobs starts without torch
    return atomic_write_bytes(path, serialized(lambda buffer: torch.save(state, buffer)), kind, party)


def load_torch(path: Path) -> Any:
    """A checkpoint or model part this node wrote (opened if it is sealed at rest, vfl/data/sealed.py)."""
    import io

    import torch
    return torch.load(io.BytesIO(sealed.read_bytes(path)), weights_only=False)


def save_checkpoint(job_dir: Path, epoch: int, state: dict[str, Any], party: str | None = None) -> Path:
    return save_torch(checkpoint_path(job_dir, epoch), {"epoch": epoch, **state}, "checkpoint", party)


def load_checkpoint(job_dir: Path, epoch: int, party: str) -> dict[str, Any]:
    path = checkpoint_path(job_dir, epoch)
    if not path.exists():
        raise OutOfOrder(f"resume: party {party!r} has no checkpoint for epoch {epoch}")
    return load_torch(path)


def checkpoint_epochs(job_dir: Path) -> list[int]:
    directory = job_dir / CHECKPOINTS
    if not directory.exists():
        return []
    return sorted(int(p.stem.split("-")[1]) for p in directory.glob("epoch-*.pt"))


def last_checkpoint(job_dir: Path) -> int:
    """The latest epoch with a checkpoint, -1 if none."""
    epochs = checkpoint_epochs(job_dir)
    return epochs[-1] if epochs else -1


def model_dir(job_dir: Path) -> Path:
    return job_dir / MODEL


def model_part_path(job_dir: Path) -> Path:
    return job_dir / MODEL / MODEL_PART


# ------------------------------------------------------------------------- staged artifacts (two-phase close)

def staged(job_dir: Path, final: Path) -> Path:
    """Where `final` (a path under `job_dir`) is written until the job commits."""
    return job_dir / STAGED / final.relative_to(job_dir)


def commit_staged(job_dir: Path, party: str | None = None) -> None:
    """Move every staged artifact into place. Idempotent: a commit repeated after a crash moves what is left."""
    root = job_dir / STAGED
    if not root.exists():
        return
    for source in sorted(p for p in root.rglob("*") if p.is_file()):
        target = job_dir / source.relative_to(root)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            fsync_dir(target.parent)
        except OSError as exc:
            raise storage_error(exc, target, ARTIFACT_KINDS.get(target.name, "job artifact"), party) from None
    shutil.rmtree(root, ignore_errors=True)


def discard_staged(job_dir: Path) -> None:
    """Roll back a prepared close: its artifacts never become visible."""
    shutil.rmtree(job_dir / STAGED, ignore_errors=True)


def discard_committed(job_dir: Path) -> None:
    """Remove a committed model part (a commit the job's active party revoked because another party rolled back)."""
    discard_staged(job_dir)
    shutil.rmtree(model_dir(job_dir), ignore_errors=True)
