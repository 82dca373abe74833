"""The tamper-evident audit log: every edit, deletion, reordering or cut at the end is detected, and nobody without
the key can write a chain that verifies."""
from __future__ import annotations

import hashlib
import json

import pytest

from vfl.governance.audit_log import AuditLog, AuditLogError, head_path, load_key, load_or_create_key, verify


@pytest.fixture
def written(tmp_path):
    key = load_or_create_key(tmp_path / "audit.key")
    log = AuditLog(tmp_path / "audit.jsonl", key)
    for i in range(6):
        log.append("bank-b", "job opened", job_id=f"j{i}")
    return tmp_path / "audit.jsonl", key


def lines(path):
    return path.read_text().splitlines(keepends=True)


def test_an_intact_log_verifies_and_a_reopened_log_continues_the_chain(written):
    path, key = written
    assert verify(path, key).entries == 6
    AuditLog(path, key).append("self", "job finished", job_id="j5")
    assert verify(path, key).entries == 7
    assert oct((path.parent / "audit.key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("tamper,message", [
    (lambda ls: ls[:2] + [ls[2].replace("bank-b", "bank-c")] + ls[3:], "line 3: edited"),
    (lambda ls: ls[:2] + ls[3:], "line 3: out of place"),
    (lambda ls: ls[:1] + [ls[2], ls[1]] + ls[3:], "line 2: out of place"),
    (lambda ls: ls[:-2], "lines were removed from the end"),
    (lambda ls: ls[:3] + ["{not json\n"] + ls[4:], "line 4: not a JSON entry"),
])
def test_each_kind_of_tampering_is_named(written, tamper, message):
    path, key = written
    path.write_text("".join(tamper(lines(path))))
    with pytest.raises(AuditLogError, match=message):
        verify(path, key)


def test_an_attacker_without_the_key_cannot_rewrite_the_chain(written, tmp_path):
    """The attacker edits a line and recomputes every later MAC and the head as a plain hash chain (all it can do
    without the key); a control with the real key shows that a rewrite with the key would pass."""
    path, key = written

    def rewrite(mac_of):
        entries = [json.loads(line) for line in lines(path)]
        entries[1]["actor"] = "someone-else"
        prev = "0" * 64
        for e in entries:
            e.pop("mac")
            e["prev"] = prev
            e["mac"] = prev = mac_of(e)
        path.write_text("".join(json.dumps(e) + "\n" for e in entries))
        head = {"seq": entries[-1]["seq"], "mac": prev}
        head["head_mac"] = mac_of({"head": head})
        head_path(path).write_text(json.dumps(head))

    canonical = lambda e: json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    rewrite(lambda e: hashlib.sha256(canonical(e)).hexdigest())
    with pytest.raises(AuditLogError, match="line 1: edited"):
        verify(path, key)
    import hmac
    rewrite(lambda e: hmac.new(key, canonical(e), hashlib.sha256).hexdigest())   # control: with the key
    assert verify(path, key).entries == 6


def test_a_wrong_or_missing_key_is_a_clear_error(written, tmp_path):
    path, _ = written
    other = load_or_create_key(tmp_path / "other.key")
    with pytest.raises(AuditLogError, match="line 1: edited .*or the key is not this log's"):
        verify(path, other)
    with pytest.raises(AuditLogError, match="no such file"):
        load_key(tmp_path / "missing.key")
    (tmp_path / "bad.key").write_text("zz")
    with pytest.raises(AuditLogError, match="not a readable audit key"):
        load_key(tmp_path / "bad.key")


def test_a_node_does_not_extend_a_broken_log(written):
    path, key = written
    path.write_text("".join(lines(path)[:2] + lines(path)[3:]))
    with pytest.raises(AuditLogError, match="out of place"):
        AuditLog(path, key)


def test_concurrent_appends_share_disk_syncs_and_each_returns_durable(tmp_path, monkeypatch):
    """Group commit: 16 threads appending at once (a node logging every scoring request) need far fewer fsyncs than
    entries (one per entry before), the chain and the head verify, and no append returns before its entry is synced."""
    import os
    import threading
    key = load_or_create_key(tmp_path / "audit.key")
    log = AuditLog(tmp_path / "audit.jsonl", key)
    real_fsync, syncs, late = os.fsync, [], []

    def slow_fsync(fd):
        real_fsync(fd)
        syncs.append(fd)
        threading.Event().wait(0.005)   # a disk's sync time, during which other threads append
    monkeypatch.setattr(os, "fsync", slow_fsync)
    head = head_path(tmp_path / "audit.jsonl")

    def writer(k):
        for i in range(10):
            entry = log.append(f"caller-{k}", "score", ids=1)
            if json.loads(head.read_text())["seq"] < entry["seq"]:   # returned before the head records it
                late.append(entry["seq"])
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify(tmp_path / "audit.jsonl", key).entries == 160 and not late
    # one per entry (160) before group commit; a run at load 12 needed 82
    assert len(syncs) < 120, f"{len(syncs)} fsyncs for 160 entries"
