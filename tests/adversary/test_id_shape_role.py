"""The coarse ID shape a passive party sends at OpenJob (vfl/data/id_shape.py), against the active party.

Holds: A's node config and table, the job spec it opens, and everything P's node answers to its OpenJob (the
reply with `rows`, `feature_dim`, `resumable_epoch` and `id_shape`), as the in-process link delivers it.
Tries: to tell which of two candidate IDs P holds beyond A's own customers (membership of a target), by opening
the same job at two worlds that differ only in that one ID, and to find any of P's IDs in what it received.
Learns: nothing of either: the two worlds answer byte for byte the same, and no ID of P appears.

A planted control (the shape leaking P's largest ID, as a careless "describe the ID range" would) makes the
same adversary win: the comparison is able to fail.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.job.conftest import job_spec
from tests.job.local import LocalNode
from vfl.data import id_shape
from vfl.job.registry import JobRegistry
from vfl.node.config import parse_node_config
from vfl.protocol.messages import OpenJob

TARGET, DECOY = "83920017", "51700394"   # both outside A's customers, same form (8 digits)


def passive_registry(home: Path, extra_id: str) -> JobRegistry:
    rng = np.random.default_rng(3)
    ids = [str(v) for v in rng.choice(np.arange(10_000_000, 49_999_999), 200, replace=False)] + [extra_id]
    table = pd.DataFrame({"id": ids, **{f"f{i}": rng.normal(size=len(ids)) for i in range(4)}})
    (home / "data").mkdir(parents=True)
    table.to_csv(home / "data" / "table.csv", index=False)
    config = parse_node_config({"party": "host", "role": "passive", "insecure": True, "workers": 1,
                                "datasets": {"table": {"path": "table.csv", "id": "id"}},
                                "policy": {"min_key_bits": 1024}}, home)
    return JobRegistry(LocalNode(config))


def view_of_a(tmp_path: Path, extra_id: str) -> bytes:
    """Everything A receives from P for its OpenJob, as bytes (the reply is all P answers at this stage)."""
    registry = passive_registry(tmp_path / extra_id, extra_id)
    spec = job_spec("shape-1")
    reply = registry.handle(OpenJob(job_id="shape-1", spec_yaml=spec.to_yaml()), "guest")
    return repr(dataclasses.asdict(reply)).encode()


def test_active_party_cannot_tell_which_id_the_passive_party_holds(tmp_path):
    with_target, with_decoy = view_of_a(tmp_path, TARGET), view_of_a(tmp_path, DECOY)
    assert b"shares" in with_target                      # the shape did cross
    assert with_target == with_decoy                     # ... and says nothing about which ID P holds
    assert TARGET.encode() not in with_target and DECOY.encode() not in with_decoy


def test_control_a_shape_that_leaks_the_range_is_caught(tmp_path, monkeypatch):
    real = id_shape.IdShape.to_wire

    def leaky(self) -> str:   # what a "helpful" shape with the ID range would send
        return real(self)[:-1] + f',"max":"{leaky.max_id}"}}'
    leaky.max_id = ""
    real_shape_of_ids = id_shape.shape_of_ids

    def shape_with_range(ids, strip, lowercase):
        leaky.max_id = max(str(i) for i in ids)
        return real_shape_of_ids(ids, strip, lowercase)
    monkeypatch.setattr(id_shape.IdShape, "to_wire", leaky)
    import vfl.job.passive as passive
    monkeypatch.setattr(passive, "shape_of_ids", shape_with_range)
    with pytest.raises(AssertionError):
        test_active_party_cannot_tell_which_id_the_passive_party_holds(tmp_path)
