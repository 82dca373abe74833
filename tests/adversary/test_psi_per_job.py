"""Adversary: a deviating active party runs extra PSI sessions inside a job at a real passive node.

Every test here plays the active party A ("guest") of a `vfl.api.Federation` against the passive party P ("host"),
a real node process, over gRPC with mutual TLS. A holds what that role holds: its node's certificate, key and
config, its own table, and the job specs it writes. It does not hold P's table; the tests read P's table only to
pick the IDs A is curious about and to judge what A learned.
"""
from __future__ import annotations

import grpc
import pytest

from tests.adversary.psi_job_peer import DeviatingActive, Refused
from tests.node.conftest import breast_parties
from vfl.transport.chunking import to_chunks
from vfl.transport.proto import node_pb2 as pb


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vfl.api import Federation
    parties = breast_parties(drop_host=0.2)
    guest_ids = [str(i) for i in parties[0].data["id"]]
    host_ids = {str(i) for i in parties[1].data["id"]}
    # the deviating active party leaves its jobs open; the cap on open jobs per peer (policy.max_open_jobs_per_peer,
    # tested on its own in tests/node/test_caps.py) is raised so that each attempt here meets the PSI rules
    with Federation(parties, workdir=tmp_path_factory.mktemp("adversary-psi"),
                    node_options={"policy": {"max_open_jobs_per_peer": 100}}) as fed:
        adversary = DeviatingActive(fed)
        # The IDs A wants to learn about: one P holds and one it does not. A leaves both out of its job's real PSI,
        # so that PSI does not tell A about them; only an extra session could.
        inside = next(i for i in guest_ids if i in host_ids)
        outside = next(i for i in guest_ids if i not in host_ids)
        own = [i for i in guest_ids if i not in (inside, outside)]
        yield {"fed": fed, "a": adversary, "own": own, "inside": inside, "outside": outside,
               "common": len(set(own) & host_ids)}
        adversary.shutdown()


def learned(a: DeviatingActive, job_id: str, world: dict) -> dict[str, int | Refused]:
    """What one-ID cardinality sessions naming `job_id` tell A about its two targets."""
    return {"inside": a.membership(job_id, world["inside"]), "outside": a.membership(job_id, world["outside"])}


def test_membership_oracle_after_the_jobs_psi_is_refused(world):
    """Membership oracle through extra one-ID cardinality sessions in a job whose PSI already ran.

    Holds: A's node certificate and config, its table and the job spec (a train job it opens at P).
    Tries: after the job's real PSI (on A's table without the two target IDs), to run one-ID cardinality
    sessions naming the job, (1) as it is, (2) after reopening it as a resume (OpenJob with resume_epoch 0, which
    A's node sends after a peer restarts), (3) after closing it and opening the same job id again. The size of
    each session (1 or 0) would tell A whether P holds the target ID.
    Learns: nothing. Every extra session is refused; the job's PSI ran once.

    Fails at b87a1c7 (the code before the fix): routes
    (2) and (3) answered, and A learned {'inside': 1, 'outside': 0} for both, i.e. exactly which target P holds.
    """
    a, job = world["a"], "oracle-1"
    assert not isinstance(a.open(job), Refused)
    real = a.psi(job, world["own"])
    assert not isinstance(real, Refused), real
    assert real.size == world["common"]

    routes = {"(1) the same job": learned(a, job, world)}
    a.open(job, resume_epoch=0)             # refused or not, the sessions after it must be
    routes["(2) the job reopened as a resume"] = learned(a, job, world)
    a.close(job)
    a.open(job)
    routes["(3) the job closed and opened again"] = learned(a, job, world)

    answered = {route: got for route, got in routes.items()
                if any(not isinstance(v, Refused) for v in got.values())}
    assert not answered, f"A learned P's membership of its chosen IDs: {answered}"
    first = routes["(1) the same job"]["inside"]
    assert first.code == "FAILED_PRECONDITION", first
    assert f"job {job!r}" in first.message and "PSI runs once per job" in first.message, first.message
    assert a.healthy()


def assert_once_per_job(outcome, job: str) -> None:
    assert isinstance(outcome, Refused), f"a second PSI session in job {job!r} answered: {outcome!r}"
    assert outcome.code == "FAILED_PRECONDITION", outcome
    assert f"job {job!r}" in outcome.message and "PSI runs once per job" in outcome.message, outcome.message
    assert "new job id" in outcome.message, outcome.message


def test_second_session_of_any_mode_is_refused(world):
    """A second PSI session in a job, in either mode, whatever the first one was.

    Holds: A's node certificate and config, its table and the job specs (train jobs it opens at P).
    Tries: (a) in a job whose first session was its real intersection PSI, a second session in intersection mode
    (to re-align on other IDs) and one in cardinality mode; (b) in a job whose first session was a cardinality
    session (which leaves the job waiting for its alignment), more cardinality sessions, then the real PSI. Any
    answer beyond the first session is a new look at P's table.
    Learns: nothing beyond the first session: every later session is refused with FAILED_PRECONDITION naming the
    job and the once-per-job rule, and the node keeps serving (a new job's PSI still runs).

    Fails at b87a1c7 (the code before the fix): in (b),
    the later cardinality sessions answered (sizes 1 and 0) and so did the intersection session that followed.
    """
    a = world["a"]
    assert not isinstance(a.open("twice-a"), Refused)
    assert not isinstance(a.psi("twice-a", world["own"]), Refused)
    later = {("twice-a", "intersection"): a.psi("twice-a", world["own"]),
             ("twice-a", "cardinality"): a.membership("twice-a", world["inside"])}

    assert not isinstance(a.open("twice-b"), Refused)
    first = a.psi("twice-b", [world["inside"]], mode="cardinality")
    later.update({("twice-b", "cardinality, inside"): a.membership("twice-b", world["inside"]),
                  ("twice-b", "cardinality, outside"): a.membership("twice-b", world["outside"]),
                  ("twice-b", "intersection"): a.psi("twice-b", world["own"])})

    answered = {what: got for what, got in later.items() if not isinstance(got, Refused)}
    assert not answered, f"sessions after a job's first one answered: {answered}"
    assert isinstance(first, Refused), f"a cardinality session in a train job answered: {first!r}"
    for (job, _), outcome in later.items():
        assert_once_per_job(outcome, job)

    assert a.healthy()
    assert not isinstance(a.open("twice-c"), Refused)
    fresh = a.psi("twice-c", world["own"])
    assert not isinstance(fresh, Refused) and fresh.size == world["common"], fresh


@pytest.mark.parametrize("job, spec, session, expected", [
    ("mm-mode", {}, {"mode": "cardinality"}, "mode: expected 'intersection' (job kind 'train'), received 'cardinality'"),
    ("mm-strip", {}, {"strip": False}, "strip: expected True (psi.strip), received False"),
    ("mm-lower", {"psi": {"lowercase": True}}, {"lowercase": False},
     "lowercase: expected True (psi.lowercase), received False"),
    ("mm-psi-kind", {"kind": "psi"}, {"mode": "cardinality"},
     "mode: expected 'intersection' (job kind 'psi'), received 'cardinality'"),
], ids=["mode", "strip", "lowercase", "psi-kind"])
def test_session_settings_must_match_the_job_spec(world, job, spec, session, expected):
    """A session whose mode or ID canonicalization differs from the job spec's.

    Holds: A's node certificate and config, its table and the job spec it opened at P.
    Tries: to run the job's PSI with another mode than the job kind needs (cardinality in a train or psi job: the
    membership oracle's first step) or other canonicalization than the spec's psi section (which changes which
    of P's IDs match, e.g. without strip or lowercase), and then, refused, the correct session.
    Learns: nothing: the session is refused naming the expected and received values, it claimed the job's one
    PSI session all the same, so the correct session afterwards is refused too (the job needs a new job id).

    Fails at b87a1c7 (the code before the fix): every
    mismatched session answered (the passive node never compared the hello with the job spec).
    """
    a = world["a"]
    kind = spec.pop("kind", "train")
    assert not isinstance(a.open(job, kind=kind, **spec), Refused)
    outcome = a.psi(job, world["own"], **session)
    assert isinstance(outcome, Refused), f"a session with {session} in job {job!r} answered: {outcome!r}"
    assert outcome.code == "PERMISSION_DENIED", outcome
    assert f"job {job!r}" in outcome.message and expected in outcome.message, outcome.message
    assert_once_per_job(a.psi(job, world["own"], lowercase=bool(spec.get("psi", {}).get("lowercase"))), job)
    assert a.healthy()


def test_matching_canonicalization_is_accepted(world):
    """The control for the test above: the spec's own settings (here lowercase) run, so the check is not blanket."""
    a = world["a"]
    assert not isinstance(a.open("mm-ok", psi={"lowercase": True}), Refused)
    result = a.psi("mm-ok", world["own"], lowercase=True)
    assert not isinstance(result, Refused), result
    assert result.size == world["common"]


def test_cardinality_job_runs_one_cardinality_session_and_never_trains(world):
    """A cardinality-only job (kind: cardinality): one session, in cardinality mode, and nothing after it.

    Holds: A's node certificate and config, its table and a cardinality job spec it opened at P.
    Tries: (1) an intersection session in the cardinality job, to get the common IDs while P agreed to reveal
    only the size; (2) after the job's real cardinality session, one-ID cardinality sessions naming the job (the
    membership oracle); (3) Setup, to move the job on to training on rows P never aligned.
    Learns: only |X ∩ Y| from the job's one session; (1), (2) and (3) are refused, naming the job.

    The job kind is new with the fix, so there is no older behaviour to fail: before it, a cardinality session
    ran inside a train job, which test_second_session_of_any_mode_is_refused covers.
    """
    a = world["a"]
    assert not isinstance(a.open("card-1", kind="cardinality"), Refused)
    wrong = a.psi("card-1", world["own"])
    assert isinstance(wrong, Refused) and wrong.code == "PERMISSION_DENIED", wrong
    assert "mode: expected 'cardinality' (job kind 'cardinality'), received 'intersection'" in wrong.message

    assert not isinstance(a.open("card-2", kind="cardinality"), Refused)
    result = a.psi("card-2", world["own"], mode="cardinality")
    assert not isinstance(result, Refused), result
    assert result.size == world["common"] and result.ids is None
    assert_once_per_job(a.psi("card-2", [world["inside"]], mode="cardinality"), "card-2")
    with pytest.raises(grpc.RpcError) as setup:
        list(a.stub.Setup(to_chunks(pb.SetupRequest(job_id="card-2", aligned_rows=result.size)), timeout=60))
    assert setup.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "job 'card-2'" in setup.value.details() and "cardinality" in setup.value.details()
    assert a.healthy()


def test_a_resume_must_carry_the_spec_the_job_was_opened_with(world):
    """Holds: what A holds above. Tries: to reopen a job whose PSI ran as a "resume" with another spec (here a
    changed training section; it could as well name another of P's datasets, which would apply the job's
    alignment to that table and return its size). Gets: PERMISSION_DENIED; the unchanged spec still resumes.
    Fails at b87a1c7 (the code before the fix): a resume was checked only for an alignment on disk."""
    import time
    from vfl.job.party_data import has_alignment
    a, job = world["a"], "resume-spec"
    assert not isinstance(a.open(job), Refused)
    assert not isinstance(a.psi(job, world["own"]), Refused)
    job_dir = world["fed"].workdir / "host" / "jobs" / job
    deadline = time.time() + 30
    while not has_alignment(job_dir) and time.time() < deadline:  # P stores it as its session ends
        time.sleep(0.1)
    changed = a.open(job, resume_epoch=0, train={"epochs": 9})
    assert isinstance(changed, Refused) and changed.code == "PERMISSION_DENIED", changed
    assert "unchanged" in changed.message, changed.message
    assert not isinstance(a.open(job, resume_epoch=0), Refused)
