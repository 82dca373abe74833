"""Retention: delete what a finished job no longer needs, by kind and age, and account for every deletion.

node.yaml `retention` sets, per kind, how long its files stay after the job ended (days; 0 = at the first sweep
after the end; unset = kept). A job has ended once it wrote its result, privacy report or lineage; a job that
never did (running, or failed before its close) is left alone. `vfl gc` sweeps on demand, and the node sweeps at
start and then every `sweep_minutes`. Each deletion goes to the node's audit log and to the job's
`retention.json`, so `vfl lineage verify` tells a file retention deleted from one that went missing.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

#: what each kind is, as paths relative to a job directory (directories are deleted whole)
KINDS: dict[str, tuple[str, ...]] = {
    "aligned_ids": ("aligned_ids.json", "aligned_rows.npy", "aligned", "table"),
    "checkpoints": ("checkpoints",),
    "model_parts": ("model",),
    "results": ("result.json", "predictions.csv", "privacy_report.json", "learning_curves.png", "roc.png",
                "audit.json"),
    "logs": ("recorded_gradients.npz",),
}
#: a job has ended once one of these exists
END_MARKERS = ("result.json", "privacy_report.json", "lineage.json")
RECORD = "retention.json"
DAY = 86_400.0


@dataclass(frozen=True)
class RetentionConfig:
    days: dict[str, float] = field(default_factory=dict)   # kind -> days after the job's end; absent: keep
    sweep_minutes: float = 60.0


@dataclass(frozen=True)
class Deletion:
    job_id: str
    kind: str
    paths: tuple[str, ...]
    bytes: int


def job_ended_at(job_dir: Path) -> float | None:
    """When the job ended here (its first end marker's mtime), or None while it has not."""
    times = [(job_dir / m).stat().st_mtime for m in END_MARKERS if (job_dir / m).exists()]
    return min(times) if times else None


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _record(job_dir: Path, deletion: Deletion, when: float) -> None:
    from vfl.data.atomic import atomic_write_text
    path = job_dir / RECORD
    deleted = json.loads(path.read_text()) if path.exists() else {}
    for rel in deletion.paths:
        deleted[rel] = {"kind": deletion.kind, "deleted_at": when}
    atomic_write_text(path, json.dumps(deleted, indent=1, sort_keys=True))


def sweep(jobs_dir: Path, config: RetentionConfig, now: float | None = None, dry_run: bool = False,
          skip: Callable[[str], bool] = lambda job_id: False,
          on_delete: Callable[[Deletion], None] = lambda d: None) -> list[Deletion]:
    """Delete every kind whose retention has passed in every ended job under `jobs_dir` (`skip`: jobs in use)."""
    now = time.time() if now is None else now
    out: list[Deletion] = []
    if not config.days or not jobs_dir.is_dir():
        return out
    for job_dir in sorted(p for p in jobs_dir.iterdir() if p.is_dir()):
        ended = job_ended_at(job_dir)
        if ended is None or skip(job_dir.name):
            continue
        for kind, days in sorted(config.days.items()):
            if now - ended < days * DAY:
                continue
            present = [job_dir / rel for rel in KINDS[kind] if (job_dir / rel).exists()]
            if not present:
                continue
            deletion = Deletion(job_dir.name, kind, tuple(p.relative_to(job_dir).as_posix() for p in present),
                                sum(_size(p) for p in present))
            if not dry_run:
                for path in present:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                _record(job_dir, deletion, now)
                on_delete(deletion)
            out.append(deletion)
    return out


def deleted_by_retention(job_dir: Path) -> dict[str, dict]:
    """relative path (a file, or a directory it was under) -> {kind, deleted_at} from the job's retention.json."""
    path = job_dir / RECORD
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
