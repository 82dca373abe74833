"""A job's state on one party's disk: `<jobs_dir>/<job_id>/status.json`, written atomically at every transition.

It is what `vfl jobs` lists, what a restarted active node reads to find its unfinished jobs, and what a passive node
answers a commit or an abort with after a restart. Fields: job_id, kind, role, active (the job's active party),
state, stage, reason, created, updated, finished (Unix times), epoch (the last completed epoch, training only).

States at the active party: running -> committing -> succeeded, or failed | cancelled | suspended (a drained node's
job, resumed when the node starts again). At a passive party: open -> prepared -> succeeded, or failed | cancelled
| suspended | interrupted (its active party stopped renewing the job's lease; a resume reopens it).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vfl.data.atomic import atomic_write_text

STATUS_FILE = "status.json"

RUNNING, COMMITTING, SUCCEEDED, FAILED, CANCELLED, SUSPENDED = (
    "running", "committing", "succeeded", "failed", "cancelled", "suspended")
OPEN, PREPARED, INTERRUPTED = "open", "prepared", "interrupted"
#: states a job never leaves by itself (a restarted active node does not resume these)
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


def status_path(job_dir: Path) -> Path:
    return Path(job_dir) / STATUS_FILE


def read_status(job_dir: Path) -> dict[str, Any] | None:
    """The job's status at this party, or None if it has none (never opened here, or from an older version)."""
    path = status_path(job_dir)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_status(job_dir: Path, party: str, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into the job's status and write it atomically; a final state also records `finished`."""
    now = time.time()
    status = read_status(job_dir) or {"created": now}
    before = status.get("state")
    status.update({k: v for k, v in fields.items() if v is not None})
    status["updated"] = now
    if status.get("state") not in FINAL | {SUSPENDED, INTERRUPTED}:
        status.pop("finished", None)
        status.pop("reason", None) if "reason" not in fields else None
    elif status.get("state") != before:
        status["finished"] = now
    atomic_write_text(status_path(job_dir), json.dumps(status, indent=1, default=str), "job status", party)
    return status
