"""Running an example as a user would: a copy of its directory, its own run.sh, this checkout's Python."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_env(**extra: str) -> dict[str, str]:
    """This checkout's interpreter for the scripts (PYTHON) and on PYTHONPATH, as `make example-*` arranges."""
    path = os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": path, **extra}


def copy_example(name: str, tmp_path: Path) -> Path:
    """The example copied as a user would copy it (links followed, no work/), its fixed loopback ports replaced by
    free ones so that a busy port on a shared machine cannot fail the run."""
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("work", "__pycache__"))
    configs = sorted(target.glob("*/node.yaml"))
    ports = {p: str(free_port()) for c in configs for p in re.findall(r'listen: "127\.0\.0\.1:(\d+)"', c.read_text())}
    for config in configs:
        text = config.read_text()
        for old, new in ports.items():
            text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        config.write_text(text)
    return target


def run_script(directory: Path, script: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(directory / script)], capture_output=True, text=True, timeout=timeout,
                          env=user_env(**env), cwd=directory.parent)
    if proc.returncode != 0:
        logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((directory / "work").glob("*.log")))
        pytest.fail(f"{script} exited with {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n"
                    f"{proc.stderr[-4000:]}{logs}")
    return proc


def result(directory: Path, name: str) -> dict:
    return json.loads((directory / "work" / "results" / f"{name}.json").read_text())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def assert_nodes_stopped(directory: Path) -> None:
    pids = [int(p) for p in (directory / "work" / "nodes.pid").read_text().split()]
    assert pids and not [p for p in pids if alive(p)], "run.sh left node processes running"


def ids(path: Path, column: str) -> set[str]:
    return set(pd.read_csv(path, dtype=str, keep_default_na=False)[column])
