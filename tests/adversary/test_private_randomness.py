"""Secrets come from secrets: nothing a party must keep is a function of what its peers know.

The generic adversary here knows everything public about a job, in particular its whole spec, and replays it:
two runs of the same spec on fresh nodes, neither with a node-local secret seed (production), must draw
different secrets. A secret derived from the spec, the job id, the party names or any other value that is the
same in both runs would repeat, whatever the derivation. The adversaries of test_training_roles.py try
concrete derivations from everything a role holds, including what differs between runs (Paillier keys).

Failed before the fix (b87a1c7): both runs drew identical weight halves and initial models.
"""
from __future__ import annotations

import numpy as np

from tests.adversary.conftest import ACTIVE, PASSIVES
from tests.adversary.roles import Truth


def _differs(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape != b.shape or float(np.max(np.abs(a - b))) > 1e-9


def test_a_replayed_spec_draws_fresh_secrets(runs):
    first, second = Truth(runs["os"]), Truth(runs["os-replay"])
    same = []
    for p in PASSIVES:
        for who, one, two in zip((ACTIVE, p), first.initial_halves(p), second.initial_halves(p)):
            if not _differs(one, two):
                same.append(f"{who}'s half of W_{p}")
        if not _differs(first.initial_shares(p)[1], second.initial_shares(p)[1]):
            same.append(f"{p}'s mask V0")
        if not _differs(first.first_mask(p), second.first_mask(p)):
            same.append(f"{p}'s first weight-gradient mask Q")
        for key, value in first.passive_start[p]["bottom"].items():
            if value.dim() >= 2 and not _differs(value, second.passive_start[p]["bottom"][key]):
                same.append(f"{p} bottom {key}")
    for key, value in first.active_start["model"].items():
        if value.dim() >= 2 and not _differs(value, second.active_start["model"][key]):
            same.append(f"{ACTIVE} {key}")
    assert not same, f"identical in two runs of one spec: {same}"


def test_defense_noise_is_fresh_for_every_job():
    """Two defenses built from one spec add different noise to the same gradients (the noise is A's secret)."""
    from vfl.job.spec import parse_job_spec
    from vfl.privacy.defenses import defense_for_job
    spec = parse_job_spec({"job_id": "x", "active": "a", "parties": {"a": {"dataset": "t"}, "b": {"dataset": "t"}}})
    grads = np.random.default_rng(0).normal(size=(64, 8))
    labels = np.arange(64) % 2
    one, two = (defense_for_job(spec).apply(grads, labels, step=(0, 0)) for _ in range(2))
    assert _differs(one, grads), "the default defense added no noise"
    assert _differs(one, two), "two jobs of one spec drew the same noise"
