"""What a peer sends is bounded before a passive node quotes it in an error, writes it to its log or keeps it in a
job's status (issue 15: "Error messages quote values cut to a bounded length"; a 30 MB value must not become a 30 MB
log line or status). In one process (tests/job/local.py), with the passive party's real JobRegistry.

Before: a peer's job id, forward or close phase, close status and PSI hello fields were quoted whole (`{value!r}`),
so a 100,000-character job id made a 4,000-character error and a 100,000-character log line, and a job id such as
`../elsewhere` was used as a folder name under jobs_dir before anything checked it; the reason an active party gave
for closing a job went whole into the passive party's status.json and log.
"""
from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from psi.protocol.session import make_hello
from tests.job.conftest import job_spec
from tests.job.local import LocalNode, run_local_job
from vfl.errors import QUOTE_CHARS, MAX_MESSAGE_CHARS, VflError
from vfl.job import psi_once
from vfl.job.network import psi_config
from vfl.job.registry import JobRegistry
from vfl.protocol.messages import (CloseJobRequest, EndEpochRequest, ForwardRequest, OpenJob, RenewLease,
                                   SetupRequest)

HUGE = "x" * 100_000
SHORT_ERROR = 400        # a refusal that quotes a peer's value: its text and one quotation
SHORT_LOG_LINE = 6_000   # a log line that carries a refusal (bounded at MAX_MESSAGE_CHARS) and a quotation


def longest_log_line(caplog) -> int:
    return max((len(r.getMessage()) for r in caplog.records), default=0)


@pytest.mark.parametrize("request_of", [
    lambda job_id: OpenJob(job_id=job_id, spec_yaml=job_spec("fine").to_yaml()),
    lambda job_id: RenewLease(job_id=job_id),
    lambda job_id: SetupRequest(job_id=job_id),
    lambda job_id: ForwardRequest(job_id=job_id),
    lambda job_id: EndEpochRequest(job_id=job_id),
    lambda job_id: CloseJobRequest(job_id=job_id, status="failed", reason="gone"),
    lambda job_id: CloseJobRequest(job_id=job_id, status="succeeded", phase="commit"),
], ids=["open", "renew", "setup", "forward", "end-epoch", "close", "commit"])
def test_a_huge_job_id_is_refused_short_in_the_error_and_the_log(configs, caplog, request_of):
    host = JobRegistry(LocalNode(configs["host"]))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(VflError) as info:
        host.handle(request_of(HUGE), "guest")
    assert info.value.status == "INVALID_ARGUMENT"
    assert len(str(info.value)) < SHORT_ERROR, len(str(info.value))
    assert "job_id" in str(info.value)
    assert longest_log_line(caplog) < SHORT_LOG_LINE


@pytest.mark.parametrize("job_id", ["../guest/jobs/x", "..", "a/b", ""])
def test_a_job_id_that_is_not_a_folder_name_is_refused_before_it_is_used(configs, job_id):
    """A commit or an abort of a job the node no longer holds in memory reads and writes its folder: a peer's job id
    must name a folder under jobs_dir and nothing else."""
    host = JobRegistry(LocalNode(configs["host"]))
    for request in (CloseJobRequest(job_id=job_id, status="failed", reason="gone"),
                    CloseJobRequest(job_id=job_id, status="succeeded", phase="commit")):
        with pytest.raises(VflError, match="job_id") as info:
            host.handle(request, "guest")
        assert info.value.status == "INVALID_ARGUMENT"


def test_a_huge_close_reason_is_kept_short_in_the_status_and_the_log(configs, caplog):
    host = JobRegistry(LocalNode(configs["host"]))
    caplog.set_level(logging.DEBUG)
    spec = job_spec("long-reason")
    host.handle(OpenJob(job_id="long-reason", spec_yaml=spec.to_yaml()), "guest")
    host.handle(CloseJobRequest(job_id="long-reason", status="failed", reason=HUGE), "guest")
    found = json.loads((configs["host"].job_dir("long-reason") / "status.json").read_text())
    assert found["state"] == "failed" and found["reason"].startswith("xxx")
    assert len(found["reason"]) < MAX_MESSAGE_CHARS + 100
    assert longest_log_line(caplog) < SHORT_LOG_LINE
    # the same for a job closed from its disk (the node no longer holds it in memory)
    host.handle(OpenJob(job_id="long-reason-2", spec_yaml=job_spec("long-reason-2").to_yaml()), "guest")
    host.passive_jobs.clear()
    host.handle(CloseJobRequest(job_id="long-reason-2", status="cancelled", reason=HUGE), "guest")
    found = json.loads((configs["host"].job_dir("long-reason-2") / "status.json").read_text())
    assert found["state"] == "cancelled" and len(found["reason"]) < MAX_MESSAGE_CHARS + 100
    assert longest_log_line(caplog) < SHORT_LOG_LINE


def test_a_huge_close_status_or_phase_is_quoted_short(configs):
    host = JobRegistry(LocalNode(configs["host"]))
    host.handle(OpenJob(job_id="odd-close", spec_yaml=job_spec("odd-close").to_yaml()), "guest")
    for request in (CloseJobRequest(job_id="odd-close", status=HUGE),
                    CloseJobRequest(job_id="odd-close", status="succeeded", phase=HUGE)):
        with pytest.raises(VflError) as info:
            host.handle(request, "guest")
        assert info.value.status == "INVALID_ARGUMENT" and len(str(info.value)) < SHORT_ERROR, str(info.value)[:200]


def test_a_huge_forward_phase_is_quoted_short(configs):
    """A training job whose first forward call names a 100,000-character phase: the passive party refuses it, and
    the job fails with an error that quotes the phase cut short."""
    def tamper(peer, message):
        if isinstance(message, ForwardRequest):
            return dataclasses.replace(message, phase=HUGE)
        return message
    spec = job_spec("odd-phase", crypto={"mode": "plaintext"}, privacy={"defense": "none"}, train__epochs=1)
    with pytest.raises(VflError, match="unknown phase") as info:
        run_local_job(spec, configs, tamper=tamper)
    assert len(str(info.value)) < SHORT_ERROR, len(str(info.value))


def test_psi_hello_fields_are_quoted_short():
    """A session whose hello differs from the job spec is refused naming each difference, each quotation cut."""
    spec = job_spec("odd-hello")
    hello = make_hello(psi_config(spec, 0, "s1"), "guest", ["host"], 10)
    odd = dataclasses.replace(hello, parties=("guest", HUGE), recipient=HUGE)
    found = psi_once.mismatches(spec, odd, "host")
    assert len(found) == 2 and all(len(line) < SHORT_ERROR for line in found), [len(f) for f in found]
    assert psi_once.describe_claim({"session_id": HUGE, "mode": "intersection"}).count("x") <= QUOTE_CHARS
