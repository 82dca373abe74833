"""Day-2 node operations: a Federation's nodes die with the process that started them, and a passive node logs
every step of a job at INFO."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vfl.api import Federation, Party

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys
    import pandas as pd
    from vfl.api import Federation, Party
    ids = [f"c{i:03d}" for i in range(40)]
    a = pd.DataFrame({"id": ids, "x": range(40), "y": [i % 2 for i in range(40)]})
    b = pd.DataFrame({"id": ids, "z": range(40)})
    fed = Federation([Party("a", a, label="y"), Party("b", b)], workdir=sys.argv[1], secure_transport=False)
    print(json.dumps([p.pid for p in fed.processes.values()]), flush=True)
    sys.stdin.read()   # never closes the federation: the test kills this process
""")


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet (the container's init may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_nodes_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "notebook.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "fed")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2 and all(alive(p) for p in pids)
        time.sleep(1.0)
        assert all(alive(p) for p in pids), "the nodes must keep running while their parent lives"
        parent.send_signal(signal.SIGKILL)     # no close(), no atexit: the way a crashed notebook kernel dies
        parent.wait(10)
        deadline = time.time() + 20
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.2)
        left = [p for p in pids if alive(p)]
        assert not left, f"node processes {left} outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in pids if "pids" in locals() else []:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_passive_node_logs_each_job_step_at_info(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"p{i:04d}" for i in range(120)]
    x = rng.normal(size=(120, 4))
    guest = pd.DataFrame({"id": ids, "a": x[:, 0], "b": x[:, 1], "y": (x.sum(axis=1) > 0).astype(int)})
    host = pd.DataFrame({"id": ids[:100], "c": x[:100, 2], "d": x[:100, 3]})
    with Federation([Party("guest", guest, label="y"), Party("host", host)], workdir=tmp_path) as fed:
        fed.fit(job_id="logged", progress=False, train={"epochs": 2, "batch_size": 32},
                crypto={"mode": "plaintext"}, privacy={"defense": "none"})
    log = (tmp_path / "host.log").read_text()
    steps = ["OpenJob opened: job 'logged'", "PSI session", "job 'logged': PSI aligned 100 common IDs of this "
             "party's 100", "job 'logged': set up (plaintext, 100 aligned rows, 2 features)",
             "job 'logged': 0 epoch(s) done, checkpoint",   # the initial weights
             "job 'logged': train phase begins (epoch index 0)", "job 'logged': eval phase begins (epoch index 0)",
             "job 'logged': 1 epoch(s) done", "job 'logged': train phase begins (epoch index 1)",
             "job 'logged': 2 epoch(s) done", "job 'logged': eval phase begins (epoch index 2)",
             "job 'logged': closed (succeeded"]
    positions = []
    for step in steps:
        lines = [line for line in log.splitlines() if step in line]
        assert lines, f"the passive node's log lacks {step!r}:\n{log}"
        assert " INFO " in lines[0], lines[0]
        positions.append(log.index(step))
    assert positions == sorted(positions), "the steps should be logged in the order they happen"
