"""One small local Ray instance per test module (CI has 2 cores): the Ray tests start it through this fixture helper."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.procs import descendants

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


class LoopbackCluster:
    """A real multi-node Ray cluster on this machine: `ray start --head` plus `ray start --address` per extra node,
    each with its own temp dir and ports, token authentication with a token of its own. For the two-node test and
    benchmarks/scale_bench.py. `env` is what a driver (a node process) needs to join: RAY_AUTH_MODE and the token."""

    def __init__(self, cpus_per_node: tuple[int, ...] = (1, 1), object_store_bytes: int = OBJECT_STORE_BYTES):
        import os
        import secrets
        import sys
        self.ray = str(Path(sys.executable).with_name("ray"))
        self.root = Path(tempfile.mkdtemp(prefix="vfl-rc-"))
        token = self.root / "token"
        token.write_text(secrets.token_hex(32))
        root_dir = str(Path(__file__).resolve().parents[1])
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
        self._proc_env = {**os.environ, **self.env,
                          "PYTHONPATH": os.pathsep.join([root_dir] + ([os.environ["PYTHONPATH"]]
                                                                      if os.environ.get("PYTHONPATH") else []))}
        self.cpus = cpus_per_node
        self.object_store = object_store_bytes
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list = []

    def _start(self, head: bool, index: int, cpus: int):
        import subprocess
        ports = [_free_port() for _ in range(7)]
        args = [self.ray, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                f"--object-store-memory={self.object_store}", f"--temp-dir={self.root / f'node{index}'}",
                f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
                "--min-worker-port=0", "--max-worker-port=0", f"--dashboard-agent-listen-port={ports[2]}",
                f"--dashboard-agent-grpc-port={ports[3]}", f"--metrics-export-port={ports[4]}",
                f"--runtime-env-agent-port={ports[5]}", "--disable-usage-stats"]
        if head:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false",
                     f"--ray-client-server-port={ports[6]}"]
        else:
            args += [f"--address={self.address}"]
        log = open(self.root / f"node{index}.log", "wb")
        self.procs.append(subprocess.Popen(args, env=self._proc_env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def _nodes_alive(self) -> int:
        import subprocess
        out = subprocess.run([self.ray, "status", f"--address={self.address}"], capture_output=True, text=True,
                             env=self._proc_env, timeout=60)
        return out.stdout.count(" node_") if out.returncode == 0 else 0

    def start(self, timeout: float = 240.0) -> "LoopbackCluster":
        import time
        deadline = time.monotonic() + timeout
        for i, cpus in enumerate(self.cpus):
            self._start(i == 0, i, cpus)
            while self._nodes_alive() < i + 1:
                if any(p.poll() is not None for p in self.procs):
                    raise RuntimeError(f"a Ray node exited while starting; see {self.root}/node{i}.log:\n"
                                       + (self.root / f"node{i}.log").read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Ray node {i} did not join within {timeout:g} s; see {self.root}")
                time.sleep(1)
        return self

    def stop(self) -> None:
        """SIGTERM every node's process group (ray start --block ends its processes), SIGKILL what is left."""
        import os
        import signal
        import time
        for p in reversed(self.procs):
            _signal_tree(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - still running: killed below
                pass
        for p in self.procs:
            _signal_tree(p.pid, signal.SIGKILL)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LoopbackCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _signal_tree(pid: int, sig) -> None:
    """Signal a process and every descendant it has now (Ray's workers included), by pid."""
    import os
    for p in [pid] + descendants(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
