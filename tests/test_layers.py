"""The layer contracts in pyproject.toml hold, and each of them can fail.

`make test` runs `lint-imports` on the tree. Here every contract is also shown to catch the back-import it exists
for: a copy of the packages gets one such import (today's layering had each of them, hidden in functions), and
lint-imports must then report that contract broken.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

# contract id -> (file to change, the back-import appended to it)
BACK_IMPORTS = {
    "vfl-layers": ("vfl/job/spec.py", "from vfl.node.config import check_name  # job -> node"),
    "engines-no-transport": ("vfl/protocol/interactive.py", "import vfl.transport.chunking  # protocol -> transport"),
    "runtime-no-wire": ("vfl/job/passive.py", "from vfl.transport.proto import node_pb2  # runtime -> protobuf"),
    "psi-layers": ("psi/core/hashing.py", "import psi.protocol.messages  # core -> protocol"),
    "psi-independent": ("psi/protocol/base.py", "import vfl.errors  # psi -> vfl"),
    "one-identity-rule": ("vfl/transport/tls.py", "from psi.transport.server import peer_info  # borrowed rule"),
    "runtimes-siblings": ("vfl/job/active.py", "from vfl.job.passive import PassiveJob  # the old tower"),
    "engines-no-ray": ("vfl/he/parallel.py", "import ray  # engine -> Ray"),
}
MORE_BACK_IMPORTS = [
    ("vfl-layers", "vfl/models/custom.py", "import vfl.node.config  # models -> node"),
    ("vfl-layers", "vfl/job/registry.py", "import vfl.node.server  # job -> node"),
    ("engines-no-transport", "vfl/he/engine.py", "import grpc  # engine -> gRPC"),
    ("engines-no-transport", "psi/core/engine.py", "import psi.transport.codec  # PSI core -> transport"),
    ("engines-no-transport", "vfl/compute/local.py", "import vfl.node.server  # compute -> node"),
    ("engines-no-ray", "psi/core/engine.py", "import ray  # PSI core -> Ray"),
    ("engines-no-ray", "vfl/job/passive.py", "from vfl.compute.ray_cluster import RayCompute  # runtime -> Ray backend"),
    ("vfl-layers", "vfl/compute/local.py", "import vfl.protocol.layout  # compute -> protocol (siblings)"),
]


def lint(tree: Path, contract: str | None = None) -> subprocess.CompletedProcess:
    args = [str(LINT), "--no-cache"] + (["--contract", contract] if contract else [])
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("layers")
    for package in ("vfl", "psi"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize("contract,path,line", [(c, p, line) for c, (p, line) in BACK_IMPORTS.items()]
                         + MORE_BACK_IMPORTS)
def test_each_contract_catches_its_back_import(pristine, tmp_path, contract, path, line):
    tree = tmp_path / "tree"
    shutil.copytree(pristine, tree)
    with open(tree / path, "a") as f:
        f.write("\n" + line + "\n")
    result = lint(tree, contract)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:]
    module = path[:-3].replace("/", ".")
    assert module in result.stdout, result.stdout[-2000:]
