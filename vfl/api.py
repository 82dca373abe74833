"""The Python API: submit jobs to an active node, or run a whole local federation for a notebook.

    from vfl.api import Federation, Party
    fed = Federation([Party("hospital-a", df_a, label="diagnosis"), Party("lab-b", df_b)], workdir="runs/x")
    fed.psi()                       # how many rows the parties share
    model = fed.fit(task="binary", epochs=5)
    model.metrics["test"]           # {'auc': ..., 'accuracy': ...}
    model.predict({...})            # joint prediction for new rows (PSI, then forward)
    fed.close()

`vfl run` and `vfl demo` are thin layers over this module.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import yaml

from vfl.errors import ConfigError, VflError
from vfl.job.spec import JobSpec, parse_job_spec
from vfl.node.config import NodeConfig, load_node_config
from vfl.transport import tls
from vfl.transport.chunking import PeerCallError, call_stream
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc


class JobError(VflError):
    """The job failed at the active node; the message is the node's reason."""


# ---------------------------------------------------------------------------------------------- client

class Client:
    """A connection to an active node's Control service."""

    def __init__(self, address: str, cert: Path | None = None, key: Path | None = None, ca: Path | None = None,
                 identity: str | None = None, insecure_party: str | None = None):
        creds = None if insecure_party else tls.channel_credentials(cert, key, ca)
        self.address = address
        self.channel = tls.open_channel(address, creds, identity)
        self.stub = pb_grpc.ControlStub(self.channel)
        self.metadata = (("x-vfl-insecure-party", insecure_party),) if insecure_party else ()

    @classmethod
    def from_node_config(cls, config: NodeConfig | str | Path, address: str | None = None) -> "Client":
        """Connect as the node itself (its own certificate), e.g. from `vfl run` or a Kubernetes Job."""
        if not isinstance(config, NodeConfig):
            config = load_node_config(config)
        if address is None:
            host, port = config.listen.rsplit(":", 1)
            address = f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{port}"
        if config.insecure:
            return cls(address, insecure_party=config.party)
        return cls(address, config.tls.cert, config.tls.key, config.tls.ca, identity=config.identity)

    def events(self, spec: JobSpec | dict | str) -> Iterator[pb.JobEvent]:
        if isinstance(spec, JobSpec):
            text = spec.to_yaml()
        elif isinstance(spec, dict):
            text = yaml.safe_dump(spec)
        else:
            text = spec
        def method(chunks, timeout):
            return self.stub.SubmitJob(chunks, timeout=timeout, metadata=self.metadata)
        try:
            yield from call_stream("active node", "SubmitJob", method, pb.JobSubmit(spec_yaml=text), pb.JobEvent)
        except PeerCallError as exc:
            raise JobError(f"{self.address}: {exc.detail or exc}") from None

    def run(self, spec: JobSpec | dict | str, progress: bool = True,
            on_event: Callable[[pb.JobEvent], None] | None = None) -> dict[str, Any]:
        """Submit a job and follow it; returns the result metrics, raises JobError on failure."""
        bar = None
        try:
            for event in self.events(spec):
                if on_event:
                    on_event(event)
                if event.kind == "progress" and progress:
                    bar = _update_bar(bar, event)
                    continue
                if bar is not None and event.kind != "progress":
                    bar.close()
                    bar = None
                if event.failed:
                    raise JobError(event.message)
                if event.kind in ("log", "epoch") and progress:
                    print(event.message, file=sys.stderr, flush=True)
                if event.done:
                    return json.loads(event.metrics_json or "{}")
        finally:
            if bar is not None:
                bar.close()
        raise JobError("the active node closed the stream before the job finished")

    def close(self) -> None:
        self.channel.close()


def _update_bar(bar, event):
    from tqdm import tqdm
    metrics = json.loads(event.metrics_json or "{}")
    steps, step = metrics.get("steps"), metrics.get("step")
    title = f"epoch {metrics.get('epoch')}/{metrics.get('epochs')}" if "epoch" in metrics else event.stage
    if bar is None or bar.desc != title:
        if bar is not None:
            bar.close()
        bar = tqdm(total=steps or 100, desc=title, unit="batch", file=sys.stderr, leave=False)
    bar.n = step if step is not None else int(event.progress * 100)
    if "loss" in metrics:
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
    bar.refresh()
    return bar


def run_job(spec_path: str | Path, config: str | Path, address: str | None = None, progress: bool = True) -> dict:
    """What `vfl run JOB.yaml --config NODE.yaml` does."""
    from vfl.job.spec import load_job_spec
    spec = load_job_spec(spec_path)
    client = Client.from_node_config(config, address)
    try:
        return client.run(spec, progress=progress)
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------- local federation

@dataclass
class Party:
    """One organization's table for a local federation: a DataFrame or a CSV/Parquet path."""
    name: str
    data: pd.DataFrame | str | Path
    id_column: str = "id"
    label: str | None = None
    categorical: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TrainedModel:
    federation: "Federation"
    job_id: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def predict(self, new_data: dict[str, pd.DataFrame | str | Path], job_id: str | None = None) -> pd.DataFrame:
        """Joint prediction for new rows: each party gives its new table; PSI aligns them, then forward."""
        return self.federation.predict(self, new_data, job_id)


class Federation:
    """Party nodes as separate `vfl serve` processes on loopback, with a dev CA and mutual TLS."""

    def __init__(self, parties: list[Party], workdir: str | Path, active: str | None = None,
                 secure_transport: bool = True, workers: int = 1, node_options: dict | None = None):
        if len({p.name for p in parties}) != len(parties):
            raise ConfigError("parties: names must be unique")
        labelled = [p.name for p in parties if p.label]
        if active is None:
            if len(labelled) != 1:
                raise ConfigError(f"parties: exactly one party must declare a label (got {labelled or 'none'})")
            active = labelled[0]
        self.parties = {p.name: p for p in parties}
        self.active = active
        self.workdir = Path(workdir).resolve()
        self.secure = secure_transport
        self.workers = workers
        self.node_options = dict(node_options or {})
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports = {p.name: free_port() for p in parties}
        self.configs: dict[str, Path] = {}
        self._client: Client | None = None
        self._jobs = 0
        self._start()

    # ------------------------------------------------------------------ nodes
    def _write_data(self, party: Party, directory: Path, name: str = "table") -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(party.data, pd.DataFrame):
            path = directory / f"{name}.csv"
            party.data.to_csv(path, index=False)
            return path
        return Path(party.data).resolve()

    def _start(self) -> None:
        from vfl.transport.certs import create_ca, issue_party_cert
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca_dir = self.workdir / "ca"
        if self.secure and not (ca_dir / "ca.crt").exists():
            create_ca(ca_dir)
        for name, party in self.parties.items():
            home = self.workdir / name
            data_path = self._write_data(party, home / "data")
            config: dict[str, Any] = {
                "party": name, "role": "active" if name == self.active else "passive",
                "listen": f"127.0.0.1:{self.ports[name]}",
                "peers": [{"name": other, "address": f"127.0.0.1:{self.ports[other]}", "identity": other}
                          for other in self.parties if other != name],
                "data_dir": str(home / "data"), "jobs_dir": str(home / "jobs"), "workers": self.workers,
                "datasets": {"table": self._dataset_entry(party, data_path)},
                # One user holds every party's data here (a notebook or a test), so the nodes accept the
                # evaluation options a real organization's node refuses by default; node_options can tighten it.
                "policy": {"min_key_bits": 1024, "allow_plaintext": True, "allow_attack_harness": True},
                **self.node_options,
            }
            if self.secure:
                certs = issue_party_cert(ca_dir, name, home / "tls")
                config["tls"] = {"cert": str(certs.cert), "key": str(certs.key), "ca": str(certs.ca)}
            else:
                config["insecure"] = True
            path = home / "node.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            self.configs[name] = path
        for name, path in self.configs.items():
            log = open(self.workdir / f"{name}.log", "ab")
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "vfl.cli.main", "serve", "--config", str(path)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for name in self.parties:
            self.wait_ready(name)
        self._client = Client.from_node_config(self.configs[self.active])

    def _dataset_entry(self, party: Party, path: Path, label: str | None | bool = True) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": str(path), "id": party.id_column}
        if party.label and label:
            entry["label"] = party.label
        if party.categorical:
            entry["categorical"] = list(party.categorical)
        if party.features:
            entry["features"] = list(party.features)
        return entry

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        """Wait until the node answers its health check (over mutual TLS)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        config = load_node_config(self.configs[name])
        creds = None if config.insecure else tls.channel_credentials(config.tls.cert, config.tls.key, config.tls.ca)
        channel = tls.open_channel(f"127.0.0.1:{self.ports[name]}", creds, name)
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.time() + timeout
        try:
            while True:
                proc = self.processes[name]
                if proc.poll() is not None:
                    raise VflError(f"node {name} exited with code {proc.returncode}; "
                                   f"see {self.workdir / (name + '.log')}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service="vfl.Node"), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                if time.time() > deadline:
                    raise VflError(f"node {name} did not become healthy within {timeout:.0f} s")
                time.sleep(0.2)
        finally:
            channel.close()

    def restart(self, name: str) -> None:
        """Kill a node process and start it again (used by the resume tests)."""
        self.kill(name)
        log = open(self.workdir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "vfl.cli.main", "serve", "--config", str(self.configs[name])],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.wait_ready(name)

    def kill(self, name: str) -> None:
        proc = self.processes[name]
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    # ------------------------------------------------------------------ jobs
    def _spec(self, kind: str, job_id: str | None, dataset: str = "table", **options: Any) -> dict[str, Any]:
        self._jobs += 1
        spec: dict[str, Any] = {"job_id": job_id or f"job-{int(time.time())}-{self._jobs}", "kind": kind,
                                "active": self.active,
                                "parties": {name: {"dataset": dataset} for name in self.parties}}
        for key, value in options.items():
            if value is not None:
                spec[key] = value
        return spec

    def run(self, spec: dict[str, Any] | JobSpec, progress: bool = True,
            on_event: Callable | None = None) -> dict[str, Any]:
        if isinstance(spec, dict):
            spec = parse_job_spec(spec)
        return self._client.run(spec, progress=progress, on_event=on_event)

    def psi(self, job_id: str | None = None, progress: bool = True) -> dict[str, Any]:
        return self.run(self._spec("psi", job_id), progress=progress)

    def fit(self, task: str = "binary", job_id: str | None = None, progress: bool = True,
            model: dict | None = None, train: dict | None = None, crypto: dict | None = None,
            split: dict | None = None, privacy: dict | None = None, on_event: Callable | None = None) -> TrainedModel:
        spec = self._spec("train", job_id, task=task, model=model, train=train, crypto=crypto, split=split,
                          privacy=privacy)
        result = self.run(spec, progress=progress, on_event=on_event)
        return TrainedModel(self, spec["job_id"], result)

    def predict(self, model: TrainedModel, new_data: dict[str, Any], job_id: str | None = None) -> pd.DataFrame:
        missing = set(self.parties) - set(new_data)
        if missing:
            raise ConfigError(f"predict: new data missing for parties {sorted(missing)}")
        # Register the new tables as a dataset "predict" in each node's config; nodes re-read datasets per job.
        spec = self._spec("predict", job_id, dataset="predict", task=model.metrics.get("task", "binary"))
        spec["model_job"] = model.job_id
        for name, data in new_data.items():
            party = self.parties[name]
            home = self.workdir / name
            path = self._write_data(Party(name, data, party.id_column), home / "data", name=f"predict-{spec['job_id']}")
            config = yaml.safe_load(self.configs[name].read_text())
            config["datasets"]["predict"] = self._dataset_entry(party, path, label=False)
            self.configs[name].write_text(yaml.safe_dump(config, sort_keys=False))
        result = self.run(spec, progress=False)
        return pd.read_csv(result["predictions"], dtype={"id": str})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        for name in list(self.processes):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def __enter__(self) -> "Federation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
