"""A passive party's errors about its own data or configuration reach the active party as an error id only.

Role: the active party of a real two-node run over mutual TLS. Holds: the failed job's error message and
events, its own node log and job directory. Tries: to read the passive party's data through its errors: a
raw ID of the passive table (a duplicate makes the table invalid), the table's file path, the names of the
other datasets the passive node serves. Must find none of them, and must find an error id that the passive
node's log also holds, next to the full detail (so the two operators can still match the failure).

Failed before the fix (commit "Passive party: errors about its own data reach the peer as an error id"):
load_dataset's DataError went to the peer verbatim, e.g. "<path>/table.csv: column 'id': duplicate id
'secret-patient-000042' in rows ...", and an unknown dataset name listed the node's configured datasets.
"""
from __future__ import annotations

import re

import pytest

from tests.node.conftest import SMALL_JOB, breast_parties

SECRET_ID = "secret-patient-000042"
ERROR_ID = re.compile(r"error id ([0-9a-f]{8})")


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from vfl.api import Federation
    guest, host = breast_parties()
    table = host.data.copy()
    table["id"] = table["id"].astype(str)
    table.loc[table.index[:2], "id"] = SECRET_ID              # one ID twice: the host's table is invalid
    host = type(host)(host.name, table)
    with Federation([guest, host], workdir=tmp_path_factory.mktemp("errors")) as fed:
        yield fed


def _failed(federation, job_id: str, **options) -> str:
    from vfl.api import JobError
    with pytest.raises(JobError) as info:
        federation.fit(task="binary", job_id=job_id, progress=False, **{**SMALL_JOB, **options})
    return str(info.value)


def _active_holdings(federation, job_id: str, message: str) -> str:
    guest = federation.workdir / "guest"
    from vfl.data import sealed   # the active party's own files, opened with its own at-rest key
    files = [sealed.read_bytes(p).decode("utf-8", "replace") for p in (guest / "jobs" / job_id).rglob("*")
             if p.is_file()]
    return "\n".join([message, (federation.workdir / "guest.log").read_text(errors="replace"), *files])


def test_invalid_passive_table_reaches_the_active_party_as_an_error_id(federation):
    message = _failed(federation, "dup-host")
    held = _active_holdings(federation, "dup-host", message)
    host_table = str(federation.workdir / "host" / "data")
    assert SECRET_ID not in held and host_table not in held, message
    match = ERROR_ID.search(message)
    assert match, message
    host_log = (federation.workdir / "host.log").read_text(errors="replace")
    line = next((ln for ln in host_log.splitlines() if match.group(1) in ln), "")
    assert line and SECRET_ID in host_log[host_log.index(line):], "the passive log lacks the detail under that id"


def test_unknown_dataset_name_does_not_list_the_passive_datasets(federation):
    from vfl.api import JobError
    spec = federation._spec("train", "unknown-ds", **SMALL_JOB)
    spec["parties"]["host"]["dataset"] = "no-such-table"
    with pytest.raises(JobError) as info:
        federation.run(spec, progress=False)
    message = str(info.value)
    assert "'table'" not in message and "configured" not in message, message
    assert ERROR_ID.search(message), message
