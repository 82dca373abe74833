"""The node config's `compute` section: where this party's heavy work runs. Set by the operator, never by a job."""
from __future__ import annotations

from dataclasses import dataclass

from vfl.config_util import Section, check_address
from vfl.errors import ConfigError, quote

BACKENDS = ("local", "ray")
#: `compute.address` values that are not host:port
RAY_LOCAL = "local"   # a private Ray instance that the node starts and stops with itself
RAY_AUTO = "auto"     # the Ray cluster already running on this machine (`ray start` wrote its address)
#: keys that only the ray backend reads
RAY_KEYS = ("address", "parallelism", "key_actors", "num_cpus", "object_store_mb", "namespace")


@dataclass(frozen=True)
class ComputeConfig:
    backend: str = "local"
    # ray: "local", "auto" or the cluster's GCS address host:port (KubeRay: <cluster>-head-svc:6379)
    address: str = RAY_LOCAL
    # ray: chunks each vectorized operation is cut into; None = the cluster's CPUs when a job sets up
    parallelism: int | None = None
    # ray: actors that hold each private key of a job (encryption and decryption run on them); None = parallelism,
    # at most 8
    key_actors: int | None = None
    # ray, address "local" only: CPUs and object store of the private instance; None = the node's `workers`
    num_cpus: int | None = None
    object_store_mb: int = 256
    # ray: the Ray namespace of this node's jobs; None = "vfl-<party>"
    namespace: str | None = None
    # both: overlap a job's per-batch work with its peer's (vfl/job, docs/scale.md "Keeping the cluster busy"):
    # the randomness of the next batch's encryptions is computed while the party waits, and evaluation and
    # prediction send the next batch while the last one is decrypted. The same messages, the same model.
    pipeline: bool = True


def parse_compute(sec: Section) -> ComputeConfig:
    """node.yaml `compute`; the ray-only keys are refused under the local backend, so a typo cannot go unnoticed."""
    d = ComputeConfig()
    backend = sec.str("backend", d.backend, choices=BACKENDS)
    pipeline = sec.bool("pipeline", d.pipeline)
    if backend == "local":
        present = [k for k in RAY_KEYS if k in sec.data]
        if present:
            raise ConfigError(f"{sec.key(present[0])}: only the ray backend reads it (compute.backend is 'local'; "
                              f"set backend: ray to use a Ray cluster)")
        sec.reject_unknown()
        return ComputeConfig(pipeline=pipeline)
    address = sec.str("address", d.address)
    if address.startswith("ray://"):
        raise ConfigError(f"{sec.key('address')}: {quote(address)} is a Ray Client address, which vfl does not use: "
                          "run the node where it reaches the cluster's nodes and give the GCS address host:port "
                          "(KubeRay: <cluster>-head-svc:6379)")
    if address not in (RAY_LOCAL, RAY_AUTO):
        check_address(address, sec.key("address"))
    config = ComputeConfig(
        backend=backend, address=address,
        parallelism=sec.int("parallelism", None, min_value=1, max_value=100_000),
        key_actors=sec.int("key_actors", None, min_value=1, max_value=1024),
        num_cpus=sec.int("num_cpus", None, min_value=1, max_value=1024),
        object_store_mb=sec.int("object_store_mb", d.object_store_mb, min_value=80, max_value=1_048_576),
        namespace=sec.str("namespace", None), pipeline=pipeline)
    if address != RAY_LOCAL:
        for key in ("num_cpus", "object_store_mb"):
            if key in sec.data:
                raise ConfigError(f"{sec.key(key)}: only a private instance (address: local) is sized by the node; "
                                  f"the cluster at {address} has its own resources")
    sec.reject_unknown()
    return config
