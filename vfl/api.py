"""The Python API: submit jobs to an active node, or run a whole local federation for a notebook.

    from vfl.api import Federation, Party
    fed = Federation([Party("hospital-a", df_a, label="diagnosis"), Party("lab-b", df_b)], workdir="runs/x")
    fed.psi()                       # align the rows the parties share (the active party keeps the common IDs)
    fed.cardinality()               # only how many rows they share
    model = fed.fit(task="binary", train={"epochs": 5})
    model.metrics["test"]           # {'auc': ..., 'accuracy': ...}
    model.history                   # a DataFrame: loss and validation metrics per epoch
    model.plots                     # {'learning_curves': PNG path, 'roc': PNG path}
    model.predict({...})            # joint prediction for new rows (PSI, then forward): a DataFrame
    model.evaluate({...})           # the same, plus the task's metrics on the active party's labels
    fed.close()

A party may bring its own bottom model: `Party(..., bottom=my_factory)`, where
`my_factory(in_features, out_features) -> torch.nn.Module` is a module-level function of an importable module.

`vfl run` and `vfl demo` are thin layers over this module.
"""
from __future__ import annotations

import copy
import itertools
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
from vfl.transport import serde
from vfl.transport.chunking import PeerCallError, call_stream, call_unary
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc


class JobError(VflError):
    """The job failed at the active node; the message is the node's reason. `code`: the gRPC status name when the
    node could not be reached or refused the call (UNAVAILABLE while it restarts), None for a job that failed."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class ScoreError(JobError):
    """The active node refused a Score request (unknown model, not allowed, rate limit, a peer unreachable)."""


# ---------------------------------------------------------------------------------------------- client

class Client:
    """A connection to an active node's Control service."""

    def __init__(self, address: str, cert: Path | None = None, key: Path | None = None, ca: Path | None = None,
                 identity: str | None = None, insecure_party: str | None = None, party: str | None = None):
        creds = None if insecure_party else tls.channel_credentials(cert, key, ca)
        self.address = address
        self.party = party or insecure_party  # the active node's party name, the default `active` of helpers
        self.channel = tls.open_channel(address, creds, identity)
        self.stub = pb_grpc.ControlStub(self.channel)
        self.scoring = pb_grpc.ScoringStub(self.channel)
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
        return cls(address, config.tls.cert, config.tls.key, config.tls.ca, identity=config.identity,
                   party=config.party)

    def _unary(self, name: str, request, reply_type):
        method = getattr(self.stub, name)

        def invoke(chunks, timeout):
            return method(chunks, timeout=timeout, metadata=self.metadata)
        try:
            return call_unary("active node", name, invoke, request, reply_type, timeout=120)
        except PeerCallError as exc:
            raise JobError(f"{self.address}: {exc.detail or exc}", exc.code) from None

    # -------------------------------------------------------------- online scoring
    def score(self, model: str, ids: list[str] | str, timeout: float = 60.0) -> dict[str, Any]:
        """Score IDs with a model the active node serves (node config serving.models): {"model", "outputs",
        "results": [{"id", "status", "scores", "detail"}, ...]} in request order. `status` is ok, unknown_id (a
        party holds no row for it), unavailable (a party did not score it) or invalid_id; `scores` has one value
        per output (binary: P(positive class))."""
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]

        def invoke(chunks, timeout):
            return self.scoring.Score(chunks, timeout=timeout, metadata=self.metadata)
        try:
            reply = call_unary("active node", "Score", invoke, pb.ScoreRequest(model=model, ids=ids), pb.ScoreReply,
                               timeout=timeout)
        except PeerCallError as exc:
            raise ScoreError(f"{self.address}: {exc.detail or exc}", exc.code) from None
        return serde.score_reply_from_pb(reply)

    # -------------------------------------------------------------- job operations
    def jobs(self) -> list[dict[str, Any]]:
        """Every job the node knows (its jobs_dir), newest first: job_id, kind, role, state, stage, created,
        updated, finished (Unix times; finished 0 while running), reason, active."""
        reply = self._unary("ListJobs", pb.JobQuery(), pb.JobList)
        return [serde.job_info_from_pb(info) for info in reply.jobs]

    def job(self, job_id: str) -> dict[str, Any]:
        """One job in detail: its status, its result if it succeeded, its last events if it ran since the node
        started."""
        return serde.job_info_from_pb(self._unary("ShowJob", pb.JobQuery(job_id=job_id), pb.JobInfo))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: it stops at its next step and every party closes it as cancelled. Returns its status."""
        return serde.job_info_from_pb(self._unary("CancelJob", pb.JobQuery(job_id=job_id), pb.JobInfo))

    def watch(self, job_id: str) -> Iterator[pb.JobEvent]:
        """A job's events from its start (or its final state, for a job of an earlier run of the node)."""
        def method(chunks, timeout):
            return self.stub.WatchJob(chunks, timeout=timeout, metadata=self.metadata)
        try:
            yield from call_stream("active node", "WatchJob", method, pb.JobWatch(job_id=job_id), pb.JobEvent)
        except PeerCallError as exc:
            raise JobError(f"{self.address}: {exc.detail or exc}", exc.code) from None

    def attach(self, job_id: str, progress: bool = True,
               on_event: Callable[[pb.JobEvent], None] | None = None) -> dict[str, Any]:
        """Re-attach to a job (after Ctrl-C on `vfl run`, from another terminal, after a restart of the node):
        show its progress to the end like `run`; returns its result, raises JobError if it failed."""
        return self._follow(self.watch(job_id), progress, on_event)

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
            raise JobError(f"{self.address}: {exc.detail or exc}", exc.code) from None

    def run(self, spec: JobSpec | dict | str, progress: bool = True,
            on_event: Callable[[pb.JobEvent], None] | None = None) -> dict[str, Any]:
        """Submit a job and follow it; returns the result metrics, raises JobError on failure."""
        return self._follow(self.events(spec), progress, on_event)

    def _follow(self, events: Iterator[pb.JobEvent], progress: bool,
                on_event: Callable[[pb.JobEvent], None] | None) -> dict[str, Any]:
        bar = None
        try:
            for event in events:
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
        raise JobError("the active node closed the stream before the job finished", "UNAVAILABLE")

    # -------------------------------------------------------------- job helpers
    # Thin wrappers that build a job spec and run it. `parties` maps each party to the name of a dataset
    # in *that party's* node config; `active` defaults to this node's party. Other spec sections (model,
    # train, crypto, split, privacy, psi) pass through as keyword arguments.
    def _active(self, active: str | None) -> str:
        active = active or self.party
        if not active:
            raise ConfigError("active: name the active party (this Client was not made from a node config)")
        return active

    def psi(self, parties: dict[str, str], active: str | None = None, job_id: str | None = None,
            progress: bool = True, **options: Any) -> dict[str, Any]:
        """PSI only; returns {'intersection': ..., 'aligned_ids': path at the active node, ...}."""
        spec = job_spec("psi", parties, self._active(active), job_id, **options)
        return self.run(parse_job_spec(spec), progress=progress)

    def cardinality(self, parties: dict[str, str], active: str | None = None, job_id: str | None = None,
                    progress: bool = True, **options: Any) -> dict[str, Any]:
        """How many IDs the parties share, and nothing else: {'job_id': ..., 'intersection': size, ...}.

        A cardinality job (kind: cardinality) runs one PSI session in cardinality mode; no party learns which
        IDs are common, no aligned IDs are written, and the job cannot go on to training.
        """
        spec = job_spec("cardinality", parties, self._active(active), job_id, **options)
        return self.run(parse_job_spec(spec), progress=progress)

    def fit(self, parties: dict[str, str], task: str = "binary", active: str | None = None,
            job_id: str | None = None, progress: bool = True, **options: Any) -> dict[str, Any]:
        """Train; returns the result ('test' metrics, 'history', 'model_parts', ...). Its job_id names the model."""
        spec = job_spec("train", parties, self._active(active), job_id, task=task, **options)
        return self.run(parse_job_spec(spec), progress=progress)

    def predict(self, model_job: str, parties: dict[str, str], active: str | None = None,
                job_id: str | None = None, progress: bool = False) -> dict[str, Any]:
        """Joint prediction (PSI, then forward) with the parts saved by training job `model_job`.

        Returns the result; 'predictions' is a CSV path on the active node. If the active party's dataset
        declares its label column, the result also holds 'metrics'.
        """
        spec = job_spec("predict", parties, self._active(active), job_id, model_job=model_job)
        return self.run(parse_job_spec(spec), progress=progress)

    def evaluate(self, model_job: str, parties: dict[str, str], active: str | None = None,
                 job_id: str | None = None, progress: bool = False) -> dict[str, float]:
        """predict() on datasets whose active-party table has the label: returns the task's metrics."""
        result = self.predict(model_job, parties, active, job_id, progress)
        if "metrics" not in result:
            raise JobError(f"evaluate: the active party's dataset {parties.get(self._active(active))!r} has no "
                           "label column, so the prediction job computed no metrics")
        return result["metrics"]

    def close(self) -> None:
        self.channel.close()


def job_spec(kind: str, parties: dict[str, str], active: str, job_id: str | None = None,
             **options: Any) -> dict[str, Any]:
    """A job spec as a dict (options set to None are left out, so the spec's defaults apply)."""
    spec: dict[str, Any] = {"job_id": job_id or new_job_id(), "kind": kind,
                            "active": active, "parties": {name: {"dataset": ds} for name, ds in parties.items()}}
    for key, value in options.items():
        if value is not None:
            spec[key] = value
    return spec


_JOB_COUNTER = itertools.count(1)


def new_job_id(prefix: str = "job") -> str:
    return f"{prefix}-{int(time.time())}-{os.getpid() % 100000}-{next(_JOB_COUNTER)}"


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
    """One organization's table for a local federation: a DataFrame or a CSV/Parquet path.

    `bottom`: this party's own bottom model instead of the default MLP, as a factory
    `bottom(in_features, out_features) -> torch.nn.Module`. It must be a module-level function (or class) of
    an importable module, since the party's node process imports it; its `out_features` is the spec's
    `model.bottom.out` (or `model.bottom_overrides.<party>.out`).

    `id_format` and `missing` are the node config's dataset options of the same names: how this party's IDs
    become the agreed form (e.g. `{"integer": True}` for IDs written as '1040.0'), and how missing cells of
    feature columns are filled (column -> 'median', 'mean' or a constant).
    """
    name: str
    data: pd.DataFrame | str | Path
    id_column: str = "id"
    label: str | None = None
    categorical: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None
    bottom: Callable[[int, int], Any] | None = None
    id_format: dict[str, Any] | None = None
    missing: dict[str, Any] | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def history_frame(result: dict[str, Any]) -> pd.DataFrame:
    """A training result's history (`result["history"]`, one dict per epoch) as a DataFrame indexed by epoch:
    loss, seconds, rows_per_second and validation_<metric> columns."""
    frame = pd.DataFrame(result.get("history") or [])
    return frame.set_index("epoch") if "epoch" in frame else frame


@dataclass
class TrainedModel:
    federation: "Federation"
    job_id: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def history(self) -> pd.DataFrame:
        """Loss and validation metrics per epoch (index: epoch), as `fit`'s result holds them."""
        return history_frame(self.metrics)

    @property
    def plots(self) -> dict[str, str]:
        """PNG paths beside result.json: 'learning_curves', and 'roc' for a binary task."""
        return dict(self.metrics.get("plots") or {})

    def predict(self, new_data: dict[str, pd.DataFrame | str | Path], job_id: str | None = None) -> pd.DataFrame:
        """Joint prediction for new rows: each party gives its new table; PSI aligns them, then forward."""
        return self.federation.predict(self, new_data, job_id)

    def evaluate(self, new_data: dict[str, pd.DataFrame | str | Path], job_id: str | None = None) -> dict[str, float]:
        """Joint prediction for labelled new rows, scored at the active party: {'auc': ..., ...}."""
        return self.federation.evaluate(self, new_data, job_id)


class Federation:
    """Party nodes as separate `vfl serve` processes on loopback, with a dev CA and mutual TLS."""

    def __init__(self, parties: list[Party], workdir: str | Path, active: str | None = None,
                 secure_transport: bool = True, workers: int = 1, node_options: dict | None = None,
                 secret_seed: int | None = None, metrics: bool = False,
                 party_options: dict[str, dict] | None = None, peer_addresses: dict[str, str] | None = None):
        """`metrics`: each node serves Prometheus metrics on 127.0.0.1:`metrics_ports[party]`. `party_options`: node
        config keys for one party's node only (e.g. that party's `compute: {backend: ray, ...}`). `peer_addresses`:
        how the other nodes reach a party, instead of its loopback port (a test's fault proxy)."""
        if len({p.name for p in parties}) != len(parties):
            raise ConfigError("parties: names must be unique")
        labelled = [p.name for p in parties if p.label]
        if active is None:
            if len(labelled) != 1:
                raise ConfigError(f"parties: exactly one party must declare a label (got {labelled or 'none'})")
            active = labelled[0]
        self.parties = {p.name: p for p in parties}
        # party -> (model name, import path) of the parties that bring their own bottom model
        self.bottoms: dict[str, tuple[str, str]] = {}
        for p in parties:
            if p.bottom is not None:
                from vfl.models.custom import import_path_of
                path = import_path_of(p.bottom, f"Party({p.name!r}).bottom")
                self.bottoms[p.name] = (path.rsplit(":", 1)[1].replace(".", "_"), path)
        self.active = active
        self.workdir = Path(workdir).resolve()
        self.secure = secure_transport
        self.workers = workers
        self.node_options = dict(node_options or {})
        # party -> node config keys for that party's node only (e.g. one party's `compute: {backend: ray, ...}`)
        self.party_options = {name: dict(options) for name, options in (party_options or {}).items()}
        unknown = sorted(set(self.party_options) - set(self.parties))
        if unknown:
            raise ConfigError(f"party_options: {unknown} are not parties of this federation ({sorted(self.parties)})")
        self.secret_seed = secret_seed
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports = {p.name: free_port() for p in parties}
        self.metrics_ports = {p.name: free_port() for p in parties} if metrics else {}
        # how the other nodes reach a party (default: its port on loopback); a test puts a fault proxy in between
        self.peer_addresses = {name: f"127.0.0.1:{port}" for name, port in self.ports.items()}
        self.peer_addresses.update(peer_addresses or {})
        self.configs: dict[str, Path] = {}
        self._client: Client | None = None
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
                "peers": [{"name": other, "address": self.peer_addresses[other], "identity": other}
                          for other in self.parties if other != name],
                "data_dir": str(home / "data"), "jobs_dir": str(home / "jobs"), "workers": self.workers,
                "datasets": {"table": self._dataset_entry(party, data_path)},
                # One user holds every party's data here (a notebook or a test), so the nodes accept the
                # evaluation options a real organization's node refuses by default; node_options can tighten it.
                **self.node_options,
                # node_options' policy keys are added to these, not put in their place
                "policy": {"min_key_bits": 1024, "allow_plaintext": True, "allow_attack_harness": True,
                           **(self.node_options.get("policy") or {})},
            }
            config.update(self.party_options.get(name, {}))
            models = dict(self.node_options.get("models") or {})
            if name in self.bottoms:
                models[self.bottoms[name][0]] = self.bottoms[name][1]
            if models:
                config["models"] = models
            if self.secret_seed is not None:
                config["secret_seed"] = node_secret_seed(self.secret_seed, name)
            if name in self.metrics_ports:
                config["metrics_listen"] = f"127.0.0.1:{self.metrics_ports[name]}"
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
                stdout=log, stderr=subprocess.STDOUT, env=self._node_env())
        for name in self.parties:
            self.wait_ready(name)
        self._open_job_files()
        self._client = Client.from_node_config(self.configs[self.active])

    def _open_job_files(self) -> None:
        """Let this process read what the nodes wrote (predictions, aligned IDs), which each node encrypts at rest
        with its own key (made at the node's first start): the user here holds every party's node anyway."""
        from vfl.node.at_rest import open_at_rest
        for path in self.configs.values():
            open_at_rest(load_node_config(path))

    def _node_env(self) -> dict[str, str]:
        """The nodes' environment: ours, plus the directories that hold the parties' bottom-model modules, and
        our pid, so each node stops when this process dies without closing the federation."""
        from vfl.node.parent_watch import PARENT_PID_ENV
        from vfl.models.custom import module_search_root
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())}
        roots = []
        for party in self.parties.values():
            root = module_search_root(party.bottom) if party.bottom is not None else None
            if root is not None and str(root) not in roots:
                roots.append(str(root))
        if roots:
            env["PYTHONPATH"] = os.pathsep.join(([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []) + roots)
        return env

    def bottom_models(self) -> dict[str, dict[str, str]]:
        """{party: {model name: import path}} of parties with their own bottom (the baseline's `models`)."""
        return {party: {name: path} for party, (name, path) in self.bottoms.items()}

    def _dataset_entry(self, party: Party, path: Path, label: str | None | bool = True) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": str(path), "id": party.id_column}
        if party.label and label:
            entry["label"] = party.label
        if party.categorical:
            entry["categorical"] = list(party.categorical)
        if party.features:
            entry["features"] = list(party.features)
        if party.id_format:
            entry["id_format"] = dict(party.id_format)
        if party.missing:
            entry["missing"] = dict(party.missing)
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
        self.start_node(name)

    def start_node(self, name: str) -> None:
        """Start a party's node again after it stopped (killed, or drained by SIGTERM), and wait until it serves."""
        if self.processes[name].poll() is None:
            raise VflError(f"node {name} is still running")
        log = open(self.workdir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "vfl.cli.main", "serve", "--config", str(self.configs[name])],
            stdout=log, stderr=subprocess.STDOUT, env=self._node_env())
        self.wait_ready(name)

    def kill(self, name: str) -> None:
        proc = self.processes[name]
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    # ------------------------------------------------------------------ jobs
    def _spec(self, kind: str, job_id: str | None, dataset: str = "table", **options: Any) -> dict[str, Any]:
        return job_spec(kind, {name: dataset for name in self.parties}, self.active, job_id, **options)

    def _with_bottoms(self, model: dict | None) -> dict | None:
        """Name each party's own bottom model in the spec (model.bottom_overrides.<party>.module)."""
        if not self.bottoms:
            return model
        model = copy.deepcopy(model) if model else {}
        overrides = model.setdefault("bottom_overrides", {})
        for party, (name, _) in self.bottoms.items():
            entry = overrides.setdefault(party, {})
            if entry.get("module") is None:
                for key in ("hidden", "activation", "dropout"):
                    entry.pop(key, None)  # the party's own module defines its layers
                entry["module"] = name
        return model

    def run(self, spec: dict[str, Any] | JobSpec, progress: bool = True,
            on_event: Callable | None = None) -> dict[str, Any]:
        if isinstance(spec, dict):
            spec = parse_job_spec(spec)
        result = self._client.run(spec, progress=progress, on_event=on_event)
        # a passive party names its saved part relative to its own jobs directory; all nodes are local here
        parts = result.get("model_parts") or {}
        for party, path in parts.items():
            if path and not Path(path).is_absolute():
                parts[party] = str(self.workdir / party / "jobs" / path)
        return result

    def psi(self, job_id: str | None = None, progress: bool = True) -> dict[str, Any]:
        return self.run(self._spec("psi", job_id), progress=progress)

    def cardinality(self, job_id: str | None = None, progress: bool = True) -> dict[str, Any]:
        """How many IDs the parties share, without learning which: {'job_id': ..., 'intersection': size, ...}."""
        return self.run(self._spec("cardinality", job_id), progress=progress)

    def fit(self, task: str = "binary", job_id: str | None = None, progress: bool = True,
            model: dict | None = None, train: dict | None = None, crypto: dict | None = None,
            split: dict | None = None, privacy: dict | None = None, on_event: Callable | None = None,
            positive_class: str | None = None) -> TrainedModel:
        """Train a model; `model`, `train`, `crypto`, `split` and `privacy` are the job spec's sections of those
        names (e.g. train={"epochs": 30, "early_stopping": {"patience": 5}}). `positive_class`: for a binary task,
        the label value whose probability the model predicts (default: the second in sorted order)."""
        spec = self._spec("train", job_id, task=task, model=self._with_bottoms(model), train=train, crypto=crypto,
                          split=split, privacy=privacy, positive_class=positive_class)
        result = self.run(spec, progress=progress, on_event=on_event)
        return TrainedModel(self, spec["job_id"], result)

    def predict(self, model: TrainedModel | str, new_data: dict[str, Any], job_id: str | None = None) -> pd.DataFrame:
        """Joint prediction for new rows of every party (PSI on them, then forward); one row per common ID.

        The first column is the active party's ID column, under its name and with the values and dtype of the
        table it gave; `frame.attrs["unmatched_rows"]` counts its rows without a prediction (IDs not at every
        party), and a warning says so when there are any.
        """
        result = self._joint(model, new_data, job_id, labelled=False)
        party = self.parties[self.active]
        frame = read_predictions(result["predictions"], party.id_column, new_data[self.active])
        frame.attrs["unmatched_rows"] = result.get("unmatched_rows", 0)
        if frame.attrs["unmatched_rows"]:
            import warnings
            warnings.warn(f"predict: {frame.attrs['unmatched_rows']} row(s) of {self.active}'s new table have no "
                          "prediction: their IDs are not in every party's new table", UnmatchedRowsWarning,
                          stacklevel=2)
        return frame

    def evaluate(self, model: TrainedModel | str, new_data: dict[str, Any], job_id: str | None = None) -> dict[str, float]:
        """Joint prediction for new labelled rows, scored at the active party with the task's metrics.

        The active party's new table must hold its label column; the result has the keys of fit's
        `metrics["test"]` (binary: auc, accuracy; multiclass: accuracy; regression: rmse) over the rows
        PSI finds in every party's new table.
        """
        party = self.parties[self.active]
        data = new_data.get(self.active)
        if data is not None and party.label:
            columns = data.columns if isinstance(data, pd.DataFrame) else _columns_of(Path(data))
            if party.label not in columns:
                raise ConfigError(f"evaluate: the new table of active party {self.active!r} has no label column "
                                  f"{party.label!r}")
        result = self._joint(model, new_data, job_id, labelled=True)
        if "metrics" not in result:
            raise JobError(f"evaluate: no metrics computed for job {result.get('job_id')!r} (no labelled rows)")
        return result["metrics"]

    def _joint(self, model: TrainedModel | str, new_data: dict[str, Any], job_id: str | None,
               labelled: bool) -> dict[str, Any]:
        what = "evaluate" if labelled else "predict"
        missing = set(self.parties) - set(new_data)
        if missing:
            raise ConfigError(f"{what}: new data missing for parties {sorted(missing)}")
        unknown = set(new_data) - set(self.parties)
        if unknown:
            raise ConfigError(f"{what}: {sorted(unknown)} are not parties of this federation ({sorted(self.parties)})")
        model_job = model.job_id if isinstance(model, TrainedModel) else str(model)
        job_id = job_id or new_job_id(what)
        dataset = f"{what}-{job_id}"
        # Register the new tables as a dataset in each node's config; nodes re-read datasets per job.
        for name, data in new_data.items():
            party = self.parties[name]
            home = self.workdir / name
            path = self._write_data(Party(name, data, party.id_column), home / "data", name=dataset)
            config = yaml.safe_load(self.configs[name].read_text())
            config["datasets"][dataset] = self._dataset_entry(party, path, label=labelled and name == self.active)
            self.configs[name].write_text(yaml.safe_dump(config, sort_keys=False))
        return self._client.predict(model_job, {name: dataset for name in self.parties}, self.active, job_id)

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


def node_secret_seed(master: int, party: str) -> int:
    """One node's own secret seed, derived from the federation's: distinct per party, and no node's seed
    reveals the master or another node's (so a test's nodes keep their secrets from each other)."""
    import hashlib
    return int.from_bytes(hashlib.sha256(f"vfl-node-secret-seed:{master}:{party}".encode()).digest()[:16], "big")


class UnmatchedRowsWarning(UserWarning):
    """Rows of the active party's new table that got no prediction, because some party lacks their IDs."""


def _id_texts_and_values(data: pd.DataFrame | str | Path, id_column: str) -> tuple[pd.Series, pd.Series]:
    """The ID column of a party's table as its node reads it (text, as written to or in the file) and as the user
    holds it (the DataFrame's own values, or pandas' reading of the file), row for row."""
    import io
    if isinstance(data, pd.DataFrame):
        values = data[id_column].reset_index(drop=True)
        written = data[[id_column]].to_csv(index=False)   # what Federation wrote for the node
        texts = pd.read_csv(io.StringIO(written), dtype=str, keep_default_na=False)[id_column]
        return texts, values
    path = Path(data)
    if path.suffix.lower() in (".parquet", ".pq"):
        values = pd.read_parquet(path, columns=[id_column])[id_column]
        return values.map(lambda v: v.decode() if isinstance(v, bytes) else str(v)), values
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    texts = pd.read_csv(path, sep=sep, usecols=[id_column], dtype=str, keep_default_na=False)[id_column]
    return texts, pd.read_csv(path, sep=sep, usecols=[id_column])[id_column]


def read_job_file(path: str | Path, config: NodeConfig | str | Path | None = None) -> bytes:
    """The content of a file a job wrote at a node on this machine (a result's 'predictions' or 'aligned_ids'),
    opened with the node's at-rest key (docs/governance.md, "Encryption at rest"). `config`: that node's node.yaml;
    not needed for the nodes of a Federation in this process. The CLI's equivalent is `vfl at-rest cat`."""
    from vfl.data import sealed
    if config is not None:
        from vfl.node.at_rest import open_at_rest
        open_at_rest(config if isinstance(config, NodeConfig) else load_node_config(config))
    return sealed.read_bytes(Path(path))


def read_predictions(path: str | Path, id_column: str, data: pd.DataFrame | str | Path) -> pd.DataFrame:
    """A predictions CSV with its ID column turned back into the values (and dtype) of the table `data` that was
    scored, so the frame joins that table on its ID column as it is."""
    import io
    frame = pd.read_csv(io.BytesIO(read_job_file(path)), dtype={id_column: str}, keep_default_na=False)
    texts, values = _id_texts_and_values(data, id_column)
    lookup = dict(zip(texts, values))
    frame[id_column] = pd.Series([lookup[t] for t in frame[id_column]], dtype=values.dtype, index=frame.index)
    return frame


def _columns_of(path: Path) -> list[str]:
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq
        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0).columns)
