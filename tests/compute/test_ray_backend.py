"""The Ray backend on one small local Ray instance: key holders, plain tasks, PSI, and failures.

Whole jobs on Ray run in tests/adversary/test_ray_secrets.py (which then scans Ray's files and object store for
the keys) and on a two-node cluster in tests/compute/test_ray_cluster.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from psi import PsiConfig
from psi.protocol.session import run_in_process
from tests.ray_support import start_local_ray, stop_local_ray
from vfl.he.randomness import check_djn_base
from vfl.compute import ComputeConfig, ComputeError, LocalCompute, open_compute
from vfl.compute import ray_cluster
from vfl.node.config import parse_node_config


@pytest.fixture(scope="module")
def compute():
    _, temp_dir = start_local_ray()
    compute = open_compute(ComputeConfig(backend="ray", address="auto"), 2, "bank")
    yield compute
    compute.close()
    stop_local_ray(temp_dir)


def test_the_node_process_never_holds_the_private_key(compute):
    key = compute.private_key(1024)
    try:
        assert key.has_private_key and len(key.engine.holder_nodes()) == 2   # two holders: one per Ray CPU here
        assert not hasattr(key.engine, "private_key") and key.engine._public.private_key is None
        check_djn_base(key.n, key.djn_base)   # the published base is a real DJN base
        values = [0, 1, -1, 12345, -(2**200), key.n // 2]
        cts = key.encrypt_ints(values)
        assert key.decrypt_ints(cts) == values
        fresh = key.rerandomize(cts)
        assert list(fresh) != list(cts) and key.decrypt_ints(fresh) == values
    finally:
        key.close()


def test_the_protocol_pattern_gives_the_local_backend_s_numbers(compute):
    """Owner encrypts rows, a peer multiplies them by exponents and re-randomizes with the owner's base, the owner
    decrypts: the same integers on Ray (key holders + tasks) as with the local backend."""
    rng = np.random.default_rng(3)
    rows = [int(v) for v in rng.integers(-2**40, 2**40, size=24)]
    exponents = rng.integers(-2**27, 2**27, size=(40, 24))
    expected = [int(v) for v in exponents.astype(object) @ np.array(rows, dtype=object)]
    for backend in (compute, LocalCompute(1)):
        owner = backend.private_key(1024)
        try:
            peer = backend.public_key(int(owner.n), owner.djn_base, None)
            z = peer.rerandomize(peer.multiexp(owner.encrypt_ints(rows), exponents))
            assert owner.decrypt_ints(z) == expected, backend.name
        finally:
            owner.close()


def test_secret_bytes_per_call_stay_below_ray_s_inline_limit(compute, monkeypatch):
    """Plaintexts sent to a key holder and decrypted values coming back go inside the call (< 100 KiB), never into
    the object store."""
    sent: list[int] = []
    real_pack = ray_cluster.pack_ints
    monkeypatch.setattr(ray_cluster, "pack_ints", lambda values, width: sent.append(len(values) * width) or
                        real_pack(values, width))
    key = compute.private_key(2048)
    try:
        values = list(range(-300, 300))
        cts = key.encrypt_ints(values)
        plain_in = list(sent)
        assert compute.secret_bytes == ray_cluster.SECRET_BYTES_PER_CALL < 100 * 1024   # Ray's default inline limit
        assert len(plain_in) >= 3 and max(plain_in) <= compute.secret_bytes
        chunks = key.engine._chunks(len(values))   # how the decryption is cut; each reply carries one chunk
        assert max(b - a for a, b in chunks) * 256 <= compute.secret_bytes
        assert key.decrypt_ints(cts) == values
        assert sum(compute.spread.snapshot()["key_calls"].values()) >= 2 * len(chunks)
    finally:
        key.close()


def test_psi_runs_as_ray_tasks(compute):
    a = [f"id-{i}" for i in range(0, 3000)]
    b = [f"id-{i}" for i in range(2000, 6000)]
    before = sum(compute.spread.snapshot()["tasks"].values())
    config = PsiConfig(chunk_size=256)
    on_ray = run_in_process({"a": a, "b": b}, "a", config, engine=compute.psi_engine())
    in_thread = run_in_process({"a": a, "b": b}, "a", PsiConfig(chunk_size=256, workers=0))
    assert sorted(on_ray["a"].ids) == sorted(in_thread["a"].ids) == [f"id-{i}" for i in range(2000, 3000)]
    assert on_ray["a"].ids == on_ray["b"].ids   # one agreed order at both parties
    assert sum(compute.spread.snapshot()["tasks"].values()) - before >= (3000 + 4000) // 256


def test_a_lost_key_holder_is_a_clear_error(compute):
    import ray
    key = compute.private_key(1024)
    ray.kill(key.engine._actors[0], no_restart=True)
    with pytest.raises(ComputeError, match="is gone .*the job must resume, which sets up fresh keys"):
        key.decrypt_ints(key.encrypt_ints(list(range(8))))
    key.close()
    with pytest.raises(ComputeError, match="key is closed"):
        key.encrypt_ints([1])


def test_a_node_config_with_the_ray_backend_connects(compute, tmp_path):
    from vfl.node.server import Node
    config = parse_node_config({"party": "bank", "role": "passive", "insecure": True, "jobs_dir": str(tmp_path),
                                "compute": {"backend": "ray", "address": "auto", "key_actors": 1}}, tmp_path)
    node = Node(config)
    described = node.compute.describe()
    assert described["backend"] == "ray" and described["nodes"] == 1 and described["cpus"] == 2
    assert described["key_actors"] == 1 and described["namespace"] == "vfl-bank"
    key = node.compute.private_key(1024)
    assert len(key.engine.holder_nodes()) == 1
    key.close()
