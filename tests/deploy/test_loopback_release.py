"""Two releases of charts/vfl-party run on loopback exactly as their rendered manifests say, and complete a job.

For each bank: render the chart with the example values, take the node container's command, args and env, write
the mounted ConfigMap and Secret files under a temporary root at the declared paths (absolute paths rewritten under
that root; listen and peer addresses rewritten to loopback ports), start `vfl serve`, and wait on the plaintext
health port with a gRPC health check as the kubelet's readiness probe does. Then run the training Job's init
container (`vfl doctor --self --wait`) and its `vfl run` container the same way, and `vfl doctor` in each node pod
as NOTES.txt tells operators to.

Two organizations, two CAs: each bank's certificate comes from its own CA and each CA bundle holds both.

bank-b's release trains its own bottom model: its values name `models: {ln: "bank_models.nets:tabular_bottom"}` and
`extraPythonPath: python`, the test copies that package (examples/bank-credit/bank_models) onto bank-b's volume where
the manifest's PYTHONPATH points, as an operator would, and the job spec names `ln` for bank-b. The node can import
the module only through the manifest's PYTHONPATH.

Each process runs in the container's declared workingDir, with only the image's environment (the Dockerfile's ENV,
PATH pointing at this checkout's virtualenv instead of /opt/vfl) plus the manifest's env; nothing of the host's
environment leaks in. The one addition is a test instrument: keyhook/, after the manifest's PYTHONPATH, records the Paillier key pairs
the nodes generate (outside the volumes), so the test can check that no file either release wrote holds them.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pandas as pd
import pytest
import torch
import yaml

from vfl.data import sealed
from vfl.transport.certs import create_ca, issue_party_cert

from .conftest import BANK_A, BANK_B, REPO, by_kind, one, small_job_spec
from .keyscan import scan
from .materialize import command_line, container, environment, materialize, rewrite_node_config

pytestmark = pytest.mark.slow

NAMESPACE = "vfl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


IMAGE_VENV = "/opt/vfl/bin"                  # the Dockerfile's virtualenv
BASE_IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"   # python:3.11-slim's PATH
KEYHOOK = Path(__file__).parent / "keyhook"
MODEL_PACKAGE = REPO / "examples" / "bank-credit" / "bank_models"   # the example's package, copied onto bank-b's volume
BANK_B_MODELS = {"ln": "bank_models.nets:tabular_bottom"}


def executables() -> dict[str, str]:
    """The image's `vfl` entrypoint is this environment's `vfl` console script."""
    vfl = Path(sys.executable).parent / "vfl"
    assert vfl.is_file(), f"{vfl} missing: install the project (pip install -e .)"
    return {"vfl": str(vfl)}


def image_environment() -> dict[str, str]:
    """The runtime stage's ENV from the Dockerfile, its virtualenv mapped to ours (the console script's shebang finds
    the interpreter and its site-packages; nothing else from the host is needed)."""
    final = (REPO / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1].replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", final, re.M):
        for name, value in re.findall(r"(\w+)=(\S+)", line):
            env[name] = value.replace("$PATH", BASE_IMAGE_PATH)
    assert IMAGE_VENV in env.get("PATH", ""), "the Dockerfile should put its virtualenv on PATH"
    env["PATH"] = env["PATH"].replace(IMAGE_VENV, str(Path(sys.executable).parent))
    return env


class Instruments:
    """Test-only additions to a process's environment: record generated Paillier keys under `record_dir`."""

    def __init__(self, record_dir: Path):
        record_dir.mkdir(parents=True, exist_ok=True)
        self.record_dir = record_dir
        self.env = {"PYTHONPATH": str(KEYHOOK), "VFL_TEST_PAILLIER_RECORD_DIR": str(record_dir)}

    def keys(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.record_dir.glob("*.json"))]


def process_environment(ctr: dict, mounts, instruments: Instruments) -> dict[str, str]:
    """What the container's process sees: the image's ENV, then the manifest's env (mount paths rewritten), then the
    test instruments (keyhook after the manifest's own PYTHONPATH entries)."""
    base = {k: (v if k == "PATH" else mounts.rewrite(v)) for k, v in image_environment().items()}
    env = environment(ctr, mounts, base)
    extra = dict(instruments.env)
    if env.get("PYTHONPATH"):
        extra["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + extra["PYTHONPATH"]
    return {**env, **extra}


def install_model_code(directory: Path) -> None:
    """What bank-b's operator copies onto its volume: the bank-credit example's package bank_models."""
    shutil.copytree(MODEL_PACKAGE, directory / "bank_models", ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)


def working_dir(ctr: dict, mounts) -> str:
    assert ctr.get("workingDir"), f"{ctr['name']}: the manifest should set workingDir (the image's is not writable)"
    return mounts.host(ctr["workingDir"])   # fails unless a volume provides it


def bank_tables() -> dict[str, pd.DataFrame]:
    """The bank-credit example's tables (examples/bank-credit/data), which its values' datasets describe: bank-a's
    customers with the label, bank-b's accounts with zero-padded customer numbers (its dataset's id_format) and
    missing cells."""
    data = REPO / "examples" / "bank-credit" / "data"
    return {"bank-a": pd.read_csv(data / "bank-a" / "customers.csv", dtype=str, keep_default_na=False),
            "bank-b": pd.read_csv(data / "bank-b" / "accounts.csv", dtype=str, keep_default_na=False)}


def common_customers(tables: dict[str, pd.DataFrame]) -> int:
    return len(set(tables["bank-a"]["customer_id"]) & {str(int(v)) for v in tables["bank-b"]["customer_id"]})


def secrets_for(root: Path) -> dict[str, dict[str, bytes]]:
    """What each organization creates before `helm install`: its key pair and a bundle of both CAs."""
    bundle = b""
    issued = {}
    for bank in ("bank-a", "bank-b"):
        create_ca(root / f"{bank}-ca", name=f"{bank} CA")
        issued[bank] = issue_party_cert(root / f"{bank}-ca", bank, root / bank)
        bundle += issued[bank].ca.read_bytes()
    out = {}
    for bank, cert in issued.items():
        out[f"{bank}-vfl-tls"] = {"tls.crt": cert.cert.read_bytes(), "tls.key": cert.key.read_bytes(),
                                  "ca.crt": cert.ca.read_bytes()}
        out[f"{bank}-vfl-ca"] = {"ca.crt": bundle}
    return out


def wait_for_probe(probe: dict, port_map: dict[int, int], proc: subprocess.Popen, log: Path,
                   timeout: float = 120.0) -> None:
    """The kubelet's gRPC probe: plaintext grpc.health.v1 Check on the probe's port and service."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    port = port_map[probe["grpc"]["port"]]
    service = probe["grpc"].get("service", "")
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vfl serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no SERVING answer on the health port within {timeout:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)


class Release:
    """One bank's rendered release, materialized on loopback."""

    def __init__(self, name: str, docs: list[dict], root: Path, secrets: dict, ports: dict[str, dict[int, int]],
                 peer_addresses: dict[str, str], instruments: Instruments):
        self.name, self.docs, self.root, self.secrets = name, docs, root, secrets
        self.instruments = instruments
        self.port_map = ports[name]                   # containerPort -> loopback port
        self.peer_addresses = peer_addresses
        self.configmaps = {d["metadata"]["name"]: d["data"] for d in by_kind(docs, "ConfigMap")}
        self.claims: dict[str, Path] = {}
        self.deployment = one(docs, "Deployment")
        self.pod = self.deployment["spec"]["template"]["spec"]
        self.node = container(self.pod, "node")
        self.proc: subprocess.Popen | None = None

    def _transform(self, cm: str, key: str, text: str, mounts) -> str:
        if key == "node.yaml":
            return rewrite_node_config(text, mounts, self.port_map, self.peer_addresses)
        return text

    def materialize(self, pod_spec: dict, ctr: dict, where: str):
        return materialize(pod_spec, ctr, self.root / where, self.configmaps, self.secrets, self.claims,
                           self._transform)

    def service_address(self) -> tuple[str, str]:
        """(in-cluster address of the Service's grpc port, the loopback address it leads to)."""
        svc = one(self.docs, "Service")
        [port] = [p for p in svc["spec"]["ports"] if p["name"] == "grpc"]
        target = {p["name"]: p["containerPort"] for p in self.node["ports"]}[port["targetPort"]]
        return (f"{svc['metadata']['name']}.{NAMESPACE}.svc:{port['port']}",
                f"127.0.0.1:{self.port_map[target]}")

    def start(self, tables: dict[str, pd.DataFrame]) -> None:
        mounts = self.materialize(self.pod, self.node, "node-pod")
        self.mounts = mounts
        config = yaml.safe_load(Path(mounts.host(self.node["args"][-1])).read_text())
        for ds in config["datasets"].values():   # the operator copies the tables onto the data volume
            path = Path(config["data_dir"]) / ds["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            tables[self.name].to_csv(path, index=False)
        pythonpath = {e["name"]: e["value"] for e in self.node.get("env") or []}.get("PYTHONPATH")
        if pythonpath:   # the operator copies its model code onto the volume, where the manifest's PYTHONPATH points
            directory = Path(mounts.host(pythonpath))
            [claim] = self.claims.values()
            assert directory.is_relative_to(claim), f"PYTHONPATH {pythonpath} is not on the data volume"
            install_model_code(directory)
        argv = command_line(self.node, mounts, executables())
        env = process_environment(self.node, mounts, self.instruments)
        self.log = self.root / "node.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=working_dir(self.node, mounts), stdout=log,
                                         stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        wait_for_probe(self.node["startupProbe"], self.port_map, self.proc, self.log)
        wait_for_probe(self.node["readinessProbe"], self.port_map, self.proc, self.log)
        wait_for_probe(self.node["livenessProbe"], self.port_map, self.proc, self.log)

    def exec_in_node(self, *args: str) -> subprocess.CompletedProcess:
        """`kubectl exec deploy/... -- ARGS` (same mounts and env as the node container)."""
        argv = command_line({"command": list(args)}, self.mounts, executables())
        return subprocess.run(argv, env=process_environment(self.node, self.mounts, self.instruments),
                              cwd=working_dir(self.node, self.mounts), capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def run_container(release: Release, pod_spec: dict, ctr: dict, where: str, timeout: float) -> subprocess.CompletedProcess:
    mounts = release.materialize(pod_spec, ctr, where)
    argv = command_line(ctr, mounts, executables())
    cluster_address, loopback = release.service_address()
    assert cluster_address in argv, f"{ctr['name']} should reach the node at its Service {cluster_address}: {argv}"
    argv = [loopback if a == cluster_address else a for a in argv]
    return subprocess.run(argv, env=process_environment(ctr, mounts, release.instruments), capture_output=True,
                          text=True, timeout=timeout, cwd=working_dir(ctr, mounts))


def test_two_releases_complete_a_job_on_loopback(helm, tmp_path):
    spec = small_job_spec("e2e-train")
    spec["model"]["bottom_overrides"] = {"bank-b": {"module": "ln"}}   # bank-b's own model, from ITS release's values
    values_a = tmp_path / "job-values.yaml"
    values_a.write_text(yaml.safe_dump({"job": {"enabled": True, "spec": spec}}))
    values_b = tmp_path / "models-values.yaml"
    values_b.write_text(yaml.safe_dump({"models": BANK_B_MODELS, "extraPythonPath": "python"}))
    # the small job uses 1024-bit keys to fit the 2-core test machine; both nodes must agree to that
    small_keys = tmp_path / "small-keys-values.yaml"
    small_keys.write_text(yaml.safe_dump({"policy": {"minKeyBits": 1024}}))
    docs = {"bank-a": helm.template("bank-a", namespace=NAMESPACE, values=[BANK_A, small_keys, values_a]),
            "bank-b": helm.template("bank-b", namespace=NAMESPACE, values=[BANK_B, small_keys, values_b])}
    ports = {bank: {50051: free_port(), 50052: free_port()} for bank in docs}
    peers = {bank: f"127.0.0.1:{ports[bank][50051]}" for bank in docs}
    secrets = secrets_for(tmp_path / "pki")
    tables = bank_tables()
    instruments = Instruments(tmp_path / "paillier-keys")   # outside both releases' directories
    releases = {bank: Release(bank, d, tmp_path / bank, secrets, ports, peers, instruments)
                for bank, d in docs.items()}
    try:
        for r in releases.values():
            r.start(tables)
        for r in releases.values():
            r.wait_ready()

        for r in releases.values():   # NOTES.txt: kubectl exec deploy/... -- vfl doctor --config ...
            doctor = r.exec_in_node("vfl", "doctor", "--config", "/etc/vfl/config/node.yaml")
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr

        a = releases["bank-a"]
        job = one(a.docs, "Job")
        pod = job["spec"]["template"]["spec"]
        wait = run_container(a, pod, container(pod, "wait-for-node", init=True), "job-pod", timeout=180)
        assert wait.returncode == 0, wait.stdout + wait.stderr
        run = run_container(a, pod, container(pod, "run"), "job-pod", timeout=900)
        assert run.returncode == 0, (run.stdout + run.stderr)[-6000:] + "\n" + a.log.read_text()[-4000:]
        result = json.loads(run.stdout[run.stdout.index("{"):])
        assert result["intersection"] == common_customers(tables) == 1200
        for bank, r in releases.items():   # every artifact of the job lives on that bank's volume, under jobs/<id>
            [claim] = r.claims.values()
            assert (claim / "jobs" / "e2e-train").is_dir(), f"{bank}: no job directory on its volume"
        check_bottom_models(releases)
    finally:
        for r in releases.values():
            r.stop()
    check_no_private_keys_written(releases, instruments)


def check_bottom_models(releases: dict[str, Release]) -> None:
    """bank-b trained the model its values name (imported from its volume); bank-a kept the default MLP."""
    parts = {}
    for bank, r in releases.items():
        [claim] = r.claims.values()
        # sealed at rest with the key the node made on its volume at first start (chart atRest, no keySecret)
        keys = sealed.AtRestKeys(sealed.load_key_file(claim / "keys" / "at-rest.key", "at-rest key"))
        stored = (claim / "jobs" / "e2e-train" / "model" / "party.pt").read_bytes()
        assert sealed.is_sealed(stored), f"{bank}: its model part is not encrypted at rest"
        parts[bank] = torch.load(io.BytesIO(keys.open(stored, "model part")), weights_only=False)
    b = parts["bank-b"]
    assert b["bottom_module"] == "ln" and b["bottom_factory"] == BANK_B_MODELS["ln"], b["bottom_module"]
    assert tuple(b["bottom"]["1.weight"].shape) == (32,)   # LayerNorm(32) of tabular_bottom, not an MLP layer
    assert parts["bank-a"]["bottom_module"] is None


def check_no_private_keys_written(releases: dict[str, Release], instruments: Instruments) -> None:
    """Each node made its own key pair for the job; no file either release wrote (its volume with the job directory,
    its emptyDirs, the logs) holds any of the private keys."""
    records = instruments.keys()
    assert all(r["p"] and r["q"] for r in records), records
    nodes = {bank: [r for r in records if any(arg.endswith("/node.yaml") and f"/{bank}/" in arg for arg in r["argv"])]
             for bank in releases}
    assert all(nodes.values()), f"expected a key pair from each node, recorded: {[r['argv'] for r in records]}"
    keys = [(int(r["p"]), int(r["q"])) for r in records]
    assert len(set(keys)) == len(keys)   # fresh per party
    for bank, r in releases.items():
        [claim] = r.claims.values()
        assert any((claim / "jobs" / "e2e-train").rglob("*")), f"{bank}: empty job directory"
    at_rest = [sealed.AtRestKeys(sealed.load_key_file(claim / "keys" / "at-rest.key", "at-rest key"))
               for r in releases.values() for claim in r.claims.values()]
    files, found = scan([r.root for r in releases.values()], keys, at_rest)
    assert files >= 10, f"only {files} files scanned"
    assert not found, "private key material written to disk:\n" + "\n".join(found)
