"""Compute backends: where a party's heavy work runs (node config `compute`, docs/scale.md).

  local   the node's own cores: vfl.he's spawn process pool and psi's compute engine (the default)
  ray     the party's own Ray cluster: key-holding actors per job and plain tasks (vfl/compute/ray_cluster.py)

Nothing below this package (vfl.he, psi, vfl.protocol) imports Ray: the engines take an executor, and psi's
engine is subclassed here. Ray itself is an optional extra, imported only when a node chooses it.
"""
from __future__ import annotations

from vfl.compute.base import Compute, ComputeError
from vfl.compute.config import BACKENDS, ComputeConfig, parse_compute
from vfl.compute.local import LocalCompute
from vfl.errors import ConfigError


def open_compute(config: ComputeConfig, workers: int, party: str) -> Compute:
    """The backend a node config names, connected (Ray: a running cluster, or a private instance started now)."""
    if config.backend == "local":
        return LocalCompute(workers)
    try:
        from vfl.compute.ray_cluster import RayCompute
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "ray":
            raise
        raise ConfigError("compute.backend: 'ray' needs Ray in the node's environment: pip install 'vfl[ray]' "
                          "(the same Ray version as the cluster's)") from None
    return RayCompute(config, workers, party)


__all__ = ["BACKENDS", "Compute", "ComputeConfig", "ComputeError", "LocalCompute", "open_compute", "parse_compute"]
