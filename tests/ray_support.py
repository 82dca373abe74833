"""One small local Ray instance per test module (CI has 2 cores): the Ray tests start it through this fixture helper."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

#: Ray refuses an object store below 75 MiB; this keeps the instance small on a shared machine
OBJECT_STORE_BYTES = 96 * 1024 * 1024


def start_local_ray() -> tuple[object, Path]:
    """ray.init with 2 CPUs, no dashboard and a small object store, its files under a fresh short /tmp directory
    (Ray's socket paths must stay under 108 characters). Returns (ray, temp_dir)."""
    import ray
    if ray.is_initialized():
        ray.shutdown()
    temp_dir = Path(tempfile.mkdtemp(prefix="vfl-ray-"))
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, _temp_dir=str(temp_dir),
             log_to_driver=False, configure_logging=False)
    return ray, temp_dir


def stop_local_ray(temp_dir: Path) -> None:
    import ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def session_dir() -> Path:
    """The running instance's session directory (logs, spilled objects, sockets)."""
    import ray
    return Path(ray._private.worker._global_node.get_session_dir_path())
