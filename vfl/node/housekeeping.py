"""The node's retention sweep (vfl/governance/retention.py): at start, then every `retention.sweep_minutes`, skipping
the jobs the node still holds open; each deletion is an audit-log entry."""
from __future__ import annotations

import logging
import threading

from vfl.governance.retention import Deletion, sweep

log = logging.getLogger("vfl.retention")


class RetentionSweeper:
    def __init__(self, node):
        self.node = node
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def in_use(self, job_id: str) -> bool:
        """A job the node holds open, or one that is not over by its status (suspended, interrupted, prepared, ...:
        it may resume, and needs its checkpoints)."""
        from vfl.job import status
        jobs = self.node.jobs
        with jobs._lock:
            events = jobs.active_events.get(job_id)
            if (events is not None and not events.finished) or job_id in jobs.passive_jobs:
                return True
        found = status.read_status(self.node.config.job_dir(job_id))
        return found is not None and found.get("state") not in status.FINAL

    def deleted(self, deletion: Deletion) -> None:
        log.info("retention: job %s: deleted its %s (%s, %d bytes)", deletion.job_id, deletion.kind,
                 ", ".join(deletion.paths), deletion.bytes)
        if self.node.audit is not None:
            self.node.audit.record("retention", "deleted", job_id=deletion.job_id, kind=deletion.kind,
                                   paths=list(deletion.paths), bytes=deletion.bytes)

    def sweep_once(self) -> list[Deletion]:
        try:
            return sweep(self.node.config.jobs_dir, self.node.config.retention, skip=self.in_use,
                         on_delete=self.deleted)
        except OSError as exc:   # the operator sees it; the next sweep tries again
            log.error("retention sweep of %s failed: %s", self.node.config.jobs_dir, exc)
            return []

    def start(self) -> None:
        if not self.node.config.retention.days:
            return
        self.sweep_once()

        def loop() -> None:
            while not self._stop.wait(self.node.config.retention.sweep_minutes * 60):
                self.sweep_once()
        self._thread = threading.Thread(target=loop, name="vfl-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
