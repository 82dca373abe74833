"""What a node writes to its tamper-evident audit log (vfl/governance/audit_log.py): who connected or was refused,
every job submitted, opened, refused, closed or finished here, and every PSI session. Step calls of a running job
are not logged one by one: the job's entries bracket them. Nothing here is sent to a peer."""
from __future__ import annotations

import logging
import threading

from vfl.errors import ConfigError
from vfl.governance.audit_log import AuditLog, load_or_create_key

log = logging.getLogger("vfl.audit")

#: distinct refused callers remembered, so a flood of strangers cannot fill the disk through the log
MAX_REFUSED_REMEMBERED = 1000


class NodeAudit:
    def __init__(self, config):
        try:
            self.log = AuditLog(config.audit_log, load_or_create_key(config.audit_key))
        except OSError as exc:
            raise ConfigError(f"audit: cannot open the audit log {config.audit_log} or its key {config.audit_key}: "
                              f"{exc.strerror or exc}") from None
        self._lock = threading.Lock()
        self._connected: set[str] = set()
        self._refused: set[str] = set()

    def record(self, actor: str, action: str, **details) -> None:
        try:
            self.log.append(actor, action, **details)
        except OSError as exc:  # the operator must see it; the call itself goes on
            log.error("audit log %s: cannot append %r by %r: %s", self.log.path, action, actor, exc)

    def connection(self, who: str, address: str) -> None:
        """The first call of each identity since the node started."""
        with self._lock:
            new = who not in self._connected
            self._connected.add(who)
        if new:
            self.record(who, "connection", address=address)

    def refused_connection(self, described: str, address: str, reason: str) -> None:
        with self._lock:
            new = described not in self._refused and len(self._refused) < MAX_REFUSED_REMEMBERED
            self._refused.add(described)
        if new:
            self.record(described, "connection refused", address=address, reason=reason)

    def job_event(self, event) -> None:
        """EventLog sink of the active jobs: their end (a result or an error) is an audit entry."""
        if event.kind == "result":
            self.record("self", "job finished", job_id=event.job_id)
        elif event.kind == "error":
            self.record("self", "job failed", job_id=event.job_id, reason=event.message[:300])
