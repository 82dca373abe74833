"""One party on a real two-node Ray cluster on loopback (`ray start --head` + `ray start --address`, each with its
own temp dir and ports): a whole job end to end through `vfl serve` nodes, the guest's heavy work spread over both
Ray nodes, the host on the local backend."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.job.conftest import breast_tables
from tests.ray_support import LoopbackCluster


@pytest.fixture(scope="module")
def cluster():
    with LoopbackCluster(cpus_per_node=(1, 1)) as c:
        yield c


def test_a_job_runs_end_to_end_with_its_work_spread_over_two_ray_nodes(cluster, tmp_path, monkeypatch):
    from vfl.api import Federation, Party
    for key, value in cluster.env.items():   # the node processes join with the cluster's token
        monkeypatch.setenv(key, value)
    guest, host = breast_tables()
    parties = [Party("guest", guest, label="y"), Party("host", host)]
    compute = {"backend": "ray", "address": cluster.address, "key_actors": 2}
    with Federation(parties, workdir=tmp_path / "fed", workers=1,
                    party_options={"guest": {"compute": compute}}) as fed:
        model = fed.fit(task="binary", job_id="two-nodes", progress=False,
                        model={"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [8]}},
                        train={"epochs": 2, "batch_size": 64, "lr": 0.05, "interactive_lr": 0.1, "seed": 1},
                        crypto={"key_bits": 1024})
    metrics = model.metrics
    assert metrics["test"]["auc"] > 0.9, metrics["test"]   # a trained model, not chance
    used = metrics["compute"]
    assert used["backend"] == "ray" and used["nodes"] == 2 and used["cpus"] == 2, used
    # both Ray nodes ran plain tasks (products, re-randomization, PSI) and held the job's key
    assert len(used["tasks_per_node"]) == 2 and min(used["tasks_per_node"].values()) > 0, used
    assert len(used["key_calls_per_node"]) == 2 and min(used["key_calls_per_node"].values()) > 0, used
