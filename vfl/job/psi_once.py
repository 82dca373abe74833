"""PSI inside a job runs once: the passive node's rules for the one session a job allows.

A job's PSI session is the active party's one look at this party's IDs for that job. Without these rules a
deviating active party could run one-ID cardinality sessions inside an opened job and learn, ID by ID, which
IDs this party holds (a membership oracle). So at a passive node:

* The first hello naming a job claims the job's one session, durably: a file in the job directory, written
  before any other check of the hello. The claim stands if that session is then refused or fails, and across a
  resume, a close and reopen of the job id, and a node restart. A failed PSI means running the job again under
  a new job id.
* That session's mode and ID canonicalization must be the job spec's: intersection for train, predict and psi
  jobs, cardinality for cardinality jobs; strip and lowercase as in the spec's `psi` section. Its parties must
  be the job's, with the job's active party first.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from psi.errors import OutOfOrder as PsiOutOfOrder
from psi.errors import PermissionDenied as PsiPermissionDenied
from psi.protocol.messages import Hello, Mode
from vfl.data.atomic import atomic_create
from vfl.errors import quote
from vfl.job.spec import JobSpec

CLAIM_FILE = "psi-session.json"
NEW_JOB_ID = "if that session failed, run the job again under a new job id"


def claim_path(job_dir: Path) -> Path:
    return job_dir / CLAIM_FILE


def read_claim(job_dir: Path) -> dict | None:
    """The claim of the job's PSI session at this node, or None if no session has claimed it yet."""
    path = claim_path(job_dir)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # unreadable: claimed all the same
        return {}


def describe_claim(claim: dict | None) -> str:
    if not claim:
        return "an earlier session"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(claim.get("claimed_at", 0)))
    return f"session {quote(claim.get('session_id'))} ({claim.get('mode')}, {when})"


def once_per_job_message(job_id: str, party: str, claim: dict | None, state: str | None = None) -> str:
    where = f"; the job is {state!r} here" if state else ""
    return (f"PSI for job {job_id!r} refused at {party!r}: PSI runs once per job, and {describe_claim(claim)} "
            f"already claimed it{where}; {NEW_JOB_ID}")


def claim(job_dir: Path, job_id: str, party: str, hello: Hello, caller: str, state: str) -> None:
    """Claim the job's one PSI session for `hello`, or refuse it (FAILED_PRECONDITION) if a session already did.

    Creating the file exclusively (and whole: vfl.data.atomic.atomic_create) makes the claim atomic across
    concurrent hellos and keeps it across restarts. A claim that cannot be written is a StorageError: no session.
    """
    record = {"session_id": hello.session_id, "mode": Mode(hello.mode).value, "strip": hello.strip,
              "lowercase": hello.lowercase, "parties": list(hello.parties), "caller": caller,
              "claimed_at": time.time()}
    if not atomic_create(claim_path(job_dir), json.dumps(record).encode(), "PSI session claim", party):
        raise PsiOutOfOrder(once_per_job_message(job_id, party, read_claim(job_dir), state))


def resumed_message(job_id: str, party: str) -> str:
    return (f"PSI for job {job_id!r} refused at {party!r}: the job was reopened as a resume, which continues on "
            f"the alignment of its PSI; PSI runs once per job ({NEW_JOB_ID})")


def mismatches(spec: JobSpec, hello: Hello, party: str) -> list[str]:
    """Each way the session differs from what the job spec allows, naming the expected and the received value."""
    expected = {"mode": (spec.psi_mode, f"job kind {spec.kind!r}"), "strip": (spec.psi.strip, "psi.strip"),
                "lowercase": (spec.psi.lowercase, "psi.lowercase")}
    received = {"mode": Mode(hello.mode).value, "strip": hello.strip, "lowercase": hello.lowercase}
    found = [f"{key}: expected {want!r} ({source}), received {quote(received[key])}"
             for key, (want, source) in expected.items() if received[key] != want]
    parties = [spec.active] + sorted(p.name for p in spec.passives)
    if list(hello.parties[:1]) != [spec.active] or sorted(hello.parties[1:]) != parties[1:]:
        found.append(f"parties: expected {parties} (the job's, active party first), "
                     f"received {quote(list(hello.parties))}")
    if hello.recipient != party:
        found.append(f"recipient: expected {party!r}, received {quote(hello.recipient)}")
    return found


def check_settings(spec: JobSpec, hello: Hello, party: str) -> None:
    """Refuse (PERMISSION_DENIED) a session whose mode, canonicalization or parties differ from the job spec's."""
    found = mismatches(spec, hello, party)
    if found:
        raise PsiPermissionDenied(
            f"PSI for job {spec.job_id!r} refused at {party!r}: the session does not match the job spec: "
            + "; ".join(found) + ". It used the job's one PSI session (PSI runs once per job); run the job again "
            "under a new job id, with the spec's settings")
