"""IDs written differently at two parties, end to end over real nodes.

The passive party writes its integer IDs as decimals ('48392017.0', what pandas writes for an integer column with
a missing value). Training fails with an error that names the difference and the fix; a PSI-only job and a
cardinality job report 0 common IDs with the same explanation; `id_format: {integer: true}` at the passive party
fixes all three. Every message either node received is recorded, and none holds one of the passive party's IDs:
only the coarse shape statistics crossed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vfl.api import Federation, JobError, Party

N = 150
QUICK = {"train": {"epochs": 1, "batch_size": 64}, "crypto": {"mode": "plaintext"}, "privacy": {"defense": "none"}}


def tables() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(11)
    numbers = rng.choice(np.arange(10_000_000, 99_999_999), size=N + 40, replace=False)
    ids = [str(v) for v in numbers]
    x = rng.normal(size=(N + 40, 3))
    active = pd.DataFrame({"customer_id": ids[:N], "a": x[:N, 0], "y": (x[:N].sum(axis=1) > 0).astype(int)})
    passive_ids = [f"{v}.0" for v in ids[20:N + 40]]          # 130 shared customers, 40 only at the passive party
    passive = pd.DataFrame({"customer_id": passive_ids, "b": x[20:, 1], "c": x[20:, 2]})
    return active, passive, ids[N:N + 40]


@pytest.fixture(scope="module")
def mismatch(tmp_path_factory):
    record = tmp_path_factory.mktemp("wire")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VFL_WIRE_RECORD_DIR", str(record))   # every node records every message it receives or sends
        active, passive, passive_only = tables()
        parties = [Party("bank-a", active, id_column="customer_id", label="y"),
                   Party("bank-b", passive, id_column="customer_id")]
        with Federation(parties, workdir=tmp_path_factory.mktemp("fed"), secure_transport=False) as fed:
            yield fed, record, passive, passive_only


def test_training_fails_naming_the_shape_difference_and_the_fix(mismatch):
    fed, *_ = mismatch
    with pytest.raises(JobError) as info:
        fed.fit(job_id="mismatch-train", progress=False, **QUICK)
    message = str(info.value)
    assert message.startswith("PSI found no common IDs between the parties: nothing to train on; ")
    assert "written as decimals ('1040.0'): bank-a 0%, bank-b 100%" in message
    assert "`id_format: {integer: true}`" in message


def test_psi_only_jobs_report_zero_with_the_same_explanation(mismatch):
    fed, *_ = mismatch
    for result in (fed.psi(job_id="mismatch-psi", progress=False),
                   fed.cardinality(job_id="mismatch-card", progress=False)):
        assert result["intersection"] == 0
        [warning] = result["warnings"]
        assert warning.startswith("PSI found 0 common IDs: the parties' ID columns are shaped differently")
        assert "written as decimals" in warning


def test_no_id_of_the_passive_party_crossed(mismatch):
    """Run after the jobs above (module order): the recorded wire of both nodes, the active node's log and every
    file in its jobs directory hold none of bank-b's IDs, in its raw form or as the integer it stands for."""
    fed, record, passive, passive_only = mismatch
    raw = b"".join(p.read_bytes() for p in sorted(record.rglob("*")) if p.is_file())
    assert raw, "nothing was recorded"
    assert b"id_shape" in raw or b'"shares"' in raw     # the shape statistics did cross
    active_home = fed.workdir / "bank-a"
    from vfl.data import sealed   # the active party holds its at-rest key: its files as it can read them
    held = (fed.workdir / "bank-a.log").read_bytes() + b"".join(
        sealed.read_bytes(p) for p in sorted((active_home / "jobs").rglob("*")) if p.is_file())
    needles = {v.encode() for v in passive["customer_id"]} | {v.encode() for v in passive_only}
    assert not [n for n in needles if n in raw], "an ID of bank-b is on the wire"
    assert not [n for n in passive_only if n.encode() in held], "the active node holds an ID only bank-b has"


def test_id_format_fixes_it(tmp_path):
    active, passive, _ = tables()
    parties = [Party("bank-a", active, id_column="customer_id", label="y"),
               Party("bank-b", passive, id_column="customer_id", id_format={"integer": True})]
    with Federation(parties, workdir=tmp_path, secure_transport=False) as fed:
        assert fed.cardinality(progress=False)["intersection"] == N - 20
        model = fed.fit(progress=False, **QUICK)
        assert model.metrics["intersection"] == N - 20 and "warnings" not in model.metrics
