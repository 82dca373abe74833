"""The passive node's rules for PSI inside a job, without nodes: the per-peer open limit, the claim of a job's
one PSI session, and the comparison of a session's hello with the job spec. tests/adversary runs the same rules
against real node processes."""
from __future__ import annotations

import threading

import pytest

from psi.errors import OutOfOrder, PermissionDenied
from psi.protocol.messages import Hello, Mode
from vfl.job import psi_once
from vfl.job.limits import OpenJobLimiter
from vfl.job.spec import parse_job_spec

THREE = {"job_id": "j3", "active": "a", "parties": {"a": {"dataset": "x"}, "b": {"dataset": "y"}, "c": {"dataset": "z"}}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_open_limit_allows_a_burst_then_one_per_interval():
    clock = Clock()
    limiter = OpenJobLimiter(6, clock)                 # 6 per minute: one every 10 s after the burst
    assert [limiter.take("b") for _ in range(6)] == [0.0] * 6
    assert limiter.take("b") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.take("b") == pytest.approx(6.0)     # a refusal spends nothing and does not reset the wait
    clock.now += 6
    assert limiter.take("b") == 0.0
    assert limiter.take("b") == pytest.approx(10.0)
    assert limiter.take("c") == 0.0                    # each caller has its own bucket
    clock.now += 3600
    assert [limiter.take("b") for _ in range(7)].count(0.0) == 6   # refills up to the burst, not beyond


def test_open_limit_is_safe_across_threads():
    limiter = OpenJobLimiter(30, Clock())
    granted = []
    threads = [threading.Thread(target=lambda: granted.append(limiter.take("b") == 0.0)) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 30


def test_open_limit_must_be_positive():
    with pytest.raises(ValueError, match="per_minute"):
        OpenJobLimiter(0)


def hello(session_id: str = "s1", mode: str = "intersection", strip: bool = True, lowercase: bool = False,
          parties: tuple[str, ...] = ("a", "b", "c"), recipient: str = "b") -> Hello:
    return Hello(session_id=session_id, salt=b"\0" * 32, strip=strip, lowercase=lowercase, mode=Mode(mode),
                 parties=parties, recipient=recipient, size=10, chunk_size=8192, metadata={"job_id": "j3"})


def test_the_first_hello_claims_the_job_for_good(tmp_path):
    job_dir = tmp_path / "jobs" / "j3"
    psi_once.claim(job_dir, "j3", "b", hello("s1", mode="cardinality"), "a", "opened")
    with pytest.raises(OutOfOrder) as second:
        psi_once.claim(job_dir, "j3", "b", hello("s2"), "a", "opened")
    text = str(second.value)
    assert "job 'j3'" in text and "PSI runs once per job" in text and "session 's1' (cardinality" in text
    assert "new job id" in text
    assert psi_once.read_claim(job_dir)["session_id"] == "s1"


def test_concurrent_hellos_claim_once(tmp_path):
    job_dir = tmp_path / "j3"
    outcomes: list[str] = []

    def claim(n: int) -> None:
        try:
            psi_once.claim(job_dir, "j3", "b", hello(f"s{n}"), "a", "opened")
            outcomes.append("claimed")
        except OutOfOrder:
            outcomes.append("refused")
    threads = [threading.Thread(target=claim, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["claimed"] + ["refused"] * 15


@pytest.mark.parametrize("kind, session, says", [
    ("train", {"mode": "cardinality"}, "mode: expected 'intersection' (job kind 'train'), received 'cardinality'"),
    ("predict", {"mode": "cardinality"}, "mode: expected 'intersection' (job kind 'predict')"),
    ("cardinality", {}, "mode: expected 'cardinality' (job kind 'cardinality'), received 'intersection'"),
    ("train", {"strip": False}, "strip: expected True (psi.strip), received False"),
    ("train", {"lowercase": True}, "lowercase: expected False (psi.lowercase), received True"),
    ("train", {"parties": ("a", "b")}, "parties: expected ['a', 'b', 'c'] (the job's, active party first), "
                                       "received ['a', 'b']"),
    ("train", {"parties": ("b", "a", "c")}, "parties: expected ['a', 'b', 'c']"),
    ("train", {"parties": ("a", "b", "c", "d")}, "received ['a', 'b', 'c', 'd']"),
    ("train", {"recipient": "c"}, "recipient: expected 'b', received 'c'"),
])
def test_a_session_must_match_the_job_spec(kind, session, says):
    extra = {"model_job": "t1"} if kind == "predict" else {}
    spec = parse_job_spec({**THREE, "kind": kind, **extra})
    with pytest.raises(PermissionDenied) as refused:
        psi_once.check_settings(spec, hello(**session), "b")
    assert says in str(refused.value) and "job 'j3'" in str(refused.value)


def test_the_spec_settings_pass_in_any_passive_order():
    spec = parse_job_spec({**THREE, "psi": {"strip": False, "lowercase": True}})
    psi_once.check_settings(spec, hello(strip=False, lowercase=True, parties=("a", "c", "b")), "b")
    card = parse_job_spec({**THREE, "kind": "cardinality"})
    psi_once.check_settings(card, hello(mode="cardinality"), "b")
