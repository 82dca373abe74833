"""A node's tamper-evident audit log: append-only JSON lines, each chained to the one before by a keyed MAC.

Entry i holds ``seq = i``, the time, who did it (a certificate identity, a configured peer name, 'self' or
'user:<identity>' for a client with a role), what and its details, ``prev`` (entry i-1's MAC) and

    mac_i = HMAC-SHA256(key, canonical JSON of entry i without its mac)

with ``prev`` of entry 0 all zeros. Editing a line breaks its MAC; deleting or reordering lines breaks the seq and
prev chain. Lines cut from the end leave a valid chain, so a head file beside the log keeps the last seq and MAC,
under the same key. The key is 32 bytes from the OS generator, in a file of its own (node.yaml ``audit.key``; in
Kubernetes a Secret), so whoever can write the log but not read the key cannot forge an entry, a chain or a head.

`vfl audit-log verify` (``verify``) names the first line that fails and how.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from vfl.errors import VflError

KEY_BYTES = 32
GENESIS = "0" * 64


class AuditLogError(VflError):
    """The audit log or its key is missing, unreadable, or fails verification."""


def _canonical(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _mac(key: bytes, entry: dict) -> str:
    return hmac.new(key, _canonical(entry), hashlib.sha256).hexdigest()


def load_or_create_key(path: Path) -> bytes:
    """The node's audit key; created (0600, from the OS generator) the first time the node starts."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(KEY_BYTES).hex().encode())
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise AuditLogError(f"audit.key {path}: not a readable audit key ({exc})") from None
    if len(key) < KEY_BYTES:
        raise AuditLogError(f"audit.key {path}: {len(key)} bytes, an audit key has {KEY_BYTES}")
    return key


def load_key(path: Path) -> bytes:
    """An existing audit key (verification never creates one: a missing key is an error)."""
    if not path.exists():
        raise AuditLogError(f"audit.key {path}: no such file; the log cannot be verified without the key it was "
                            "written with")
    return _read_key(path)


def head_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".head")


class AuditLog:
    """Appends entries to one log file; safe across the node's threads (one node process owns the file).

    An append returns once its entry is on disk (fsync) and the head records it. Appends of several threads at
    once share one fsync and one head write (group commit): the first writes and syncs, the others find their
    entries synced already. A node that logs every scoring request thus pays one disk sync per burst, not per
    request, and no entry is acknowledged before it is durable.
    """

    def __init__(self, path: Path, key: bytes):
        self.path, self.key = path, key
        self._lock = threading.Lock()        # the chain: seq, prev and the order of lines
        self._sync_lock = threading.Lock()   # one fsync and head write at a time
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._prev = _tail(path, key)
        self._synced = self._seq - 1

    def append(self, actor: str, action: str, **details) -> dict:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        with self._lock:
            entry = {"seq": self._seq, "time": now, "actor": actor, "action": action, "details": details,
                     "prev": self._prev}
            entry["mac"] = _mac(self.key, entry)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
            self._seq, self._prev = self._seq + 1, entry["mac"]
        self._sync(entry["seq"])
        return entry

    def _sync(self, seq: int) -> None:
        """Make every entry up to `seq` durable, with every other entry written by then."""
        with self._sync_lock:
            if self._synced >= seq:   # another thread's sync covered it
                return
            with self._lock:
                last, mac = self._seq - 1, self._prev
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)   # the file's data, whichever descriptor wrote it
            finally:
                os.close(fd)
            self._write_head(last, mac)
            self._synced = last

    def _write_head(self, seq: int, mac: str) -> None:
        head = {"seq": seq, "mac": mac}
        head["head_mac"] = _mac(self.key, {"head": head})
        tmp = head_path(self.path).with_suffix(".tmp")
        tmp.write_text(json.dumps(head))
        os.replace(tmp, head_path(self.path))


def _tail(path: Path, key: bytes) -> tuple[int, str]:
    """Where appending continues: verifies the existing log first, so a node never extends a broken chain."""
    if not path.exists() or path.stat().st_size == 0:
        return 0, GENESIS
    result = verify(path, key)
    return result.entries, result.last_mac


@dataclass(frozen=True)
class Verified:
    entries: int
    first_time: str | None
    last_time: str | None
    last_mac: str


def verify(path: Path, key: bytes) -> Verified:
    """Check every line's MAC and the chain, then the head; raises AuditLogError naming the first failure."""
    if not path.exists():
        raise AuditLogError(f"audit log {path}: no such file")
    prev, seq, first, last = GENESIS, 0, None, None
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            entry = _parse(line, number)
            mac = entry.pop("mac", None)
            if mac is None or not hmac.compare_digest(str(mac), _mac(key, entry)):
                raise AuditLogError(f"audit log {path}, line {number}: edited (its MAC does not match its content, "
                                    "or the key is not this log's)")
            if entry.get("seq") != seq or entry.get("prev") != prev:
                raise AuditLogError(f"audit log {path}, line {number}: out of place (seq {entry.get('seq')} where "
                                    f"{seq} belongs): a line before it was deleted, or lines were reordered")
            first = first or entry.get("time")
            prev, seq, last = mac, seq + 1, entry.get("time")
    _check_head(path, key, seq, prev)
    return Verified(entries=seq, first_time=first, last_time=last, last_mac=prev)


def _parse(line: str, number: int) -> dict:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        raise AuditLogError(f"audit log, line {number}: not a JSON entry (edited or truncated)") from None
    if not isinstance(entry, dict):
        raise AuditLogError(f"audit log, line {number}: not a JSON object")
    return entry


def _check_head(path: Path, key: bytes, entries: int, last_mac: str) -> None:
    head_file = head_path(path)
    if not head_file.exists():
        if entries:
            raise AuditLogError(f"audit log {path}: its head file {head_file.name} is missing")
        return
    try:
        head = json.loads(head_file.read_text())
        head_mac = head.pop("head_mac")
    except (OSError, ValueError, KeyError, AttributeError):
        raise AuditLogError(f"audit log {path}: its head file {head_file.name} is unreadable") from None
    if not hmac.compare_digest(str(head_mac), _mac(key, {"head": head})):
        raise AuditLogError(f"audit log {path}: its head file {head_file.name} was edited")
    if head.get("seq") != entries - 1 or head.get("mac") != last_mac:
        raise AuditLogError(f"audit log {path}: ends at entry {entries - 1} but its head records entry "
                            f"{head.get('seq')}: lines were removed from the end")
