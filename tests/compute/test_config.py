"""The node config's `compute` section, and the default install without Ray."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vfl.compute import ComputeConfig, LocalCompute, open_compute
from vfl.errors import ConfigError
from vfl.node.config import parse_node_config

ROOT = Path(__file__).resolve().parents[2]


def node(compute=None, **extra) -> object:
    data = {"party": "bank", "role": "passive", "insecure": True, **extra}
    if compute is not None:
        data["compute"] = compute
    return parse_node_config(data, Path("/tmp"))


def test_default_is_the_local_backend_with_the_node_workers():
    config = node(workers=3)
    assert config.compute == ComputeConfig() and config.compute.backend == "local"
    compute = open_compute(config.compute, config.workers, config.party)
    assert isinstance(compute, LocalCompute) and compute.parallelism == 3
    from vfl.he import ifma
    assert compute.describe() == {"backend": "local", "workers": 3, "modexp": ifma.backend()}


def test_ray_settings_are_read():
    config = node({"backend": "ray", "address": "raycluster-bank-head-svc:6379", "parallelism": 64,
                   "key_actors": 4, "namespace": "bank-vfl"}).compute
    assert (config.backend, config.address, config.parallelism, config.key_actors, config.namespace) == \
        ("ray", "raycluster-bank-head-svc:6379", 64, 4, "bank-vfl")
    local = node({"backend": "ray", "num_cpus": 2, "object_store_mb": 128}).compute
    assert (local.address, local.num_cpus, local.object_store_mb) == ("local", 2, 128)


@pytest.mark.parametrize("compute,message", [
    ({"backend": "spark"}, r"compute.backend: must be one of \['local', 'ray'\]"),
    ({"address": "head:6379"}, r"compute.address: only the ray backend reads it"),
    ({"backend": "local", "key_actors": 2}, r"compute.key_actors: only the ray backend reads it"),
    ({"backend": "ray", "address": "ray://head:10001"}, r"compute.address: 'ray://head:10001' is a Ray Client address"),
    ({"backend": "ray", "address": "head"}, r"compute.address: 'head' is not host:port"),
    ({"backend": "ray", "address": "head:6379", "num_cpus": 4}, r"compute.num_cpus: only a private instance"),
    ({"backend": "ray", "parallelism": 0}, r"compute.parallelism: must be >= 1"),
    ({"backend": "ray", "key_actor": 2}, r"compute.key_actor: unknown key"),
    ("ray", r"compute: must be a mapping"),
])
def test_bad_compute_sections_are_refused_with_the_key(compute, message):
    with pytest.raises(ConfigError, match=message):
        node(compute)


def test_the_default_install_works_without_ray():
    """With Ray absent (as after `pip install vfl`), the node, the API and the CLI import, the local backend runs,
    and a node config naming the ray backend fails with the extra to install."""
    code = """
import sys
sys.modules["ray"] = None   # import ray now raises ImportError, as in an environment without it
import vfl.cli.main, vfl.node.server, vfl.api, vfl.demo
from vfl.compute import ComputeConfig, open_compute
from vfl.errors import ConfigError
compute = open_compute(ComputeConfig(), 1, "bank")
key = compute.private_key(1024)
assert key.decrypt_ints(key.encrypt_ints([5, -7])) == [5, -7]
try:
    open_compute(ComputeConfig(backend="ray"), 1, "bank")
except ConfigError as exc:
    print(exc)
assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")] or sys.modules["ray"] is None
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "needs Ray in the node's environment: pip install 'vfl[ray]'" in proc.stdout
