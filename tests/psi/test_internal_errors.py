"""An unexpected exception at a serving party reaches the connecting party as an error id, never its text.

The connecting party plays the peer; the serving party's id provider, or its ID column during the session,
raises an exception (not a PsiError) whose message holds a private path. The peer must read neither the
text nor the exception type, but an error id that the serving party's log shows next to the exception.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from psi import PsiConfig
from psi.errors import PeerError
from psi.transport import run_session

from .conftest import random_ids

SECRET = "SECRET-MARKER /data/patients.csv"
ERROR_ID = re.compile(r"internal error at bank \(error id ([0-9a-f]{8})\); details are in that node's log")
IDS = random_ids(40, 71)


class FailingColumn(Sequence):
    """An ID column whose rows cannot be read (a storage failure, say): its length works, its items do not."""

    def __len__(self) -> int:
        return len(IDS)

    def __getitem__(self, index):
        raise OSError(SECRET)


def _peer_error(server, caplog) -> tuple[str, str]:
    """(what the connecting party read, the serving party's log) for one failing session."""
    with caplog.at_level("ERROR"), pytest.raises(PeerError) as info:
        run_session({"bank": server.channel()}, IDS[:10], PsiConfig(workers=0), me="alice", engine=server.engine)
    return str(info.value), caplog.text


def _check(read: str, log: str) -> None:
    assert SECRET not in read and "OSError" not in read and "RuntimeError" not in read, read
    ids = set(ERROR_ID.findall(read))
    assert len(ids) == 1, read
    error_id = ids.pop()
    assert error_id in log and SECRET in log and "Traceback" in log, log


def test_failing_id_provider(psi_server, engine, caplog):
    server = psi_server({})
    server.engine = engine

    def provider(hello, peer):
        raise RuntimeError(SECRET)
    server.servicer.id_provider = provider
    read, log = _peer_error(server, caplog)
    assert "could not provide its IDs" in read, read
    _check(read, log)


def test_failure_inside_the_session(psi_server, engine, caplog):
    server = psi_server({"bank": FailingColumn()})
    server.engine = engine
    read, log = _peer_error(server, caplog)
    _check(read, log)
    assert len(re.findall(r"error id [0-9a-f]{8}\) in a PSI session", log)) == 1, "logged once per exception"
    # the server keeps serving
    server.ids_by_name["bank"] = IDS
    assert run_session({"bank": server.channel()}, IDS[:10], PsiConfig(workers=0), engine=engine).size == 10
