"""Job operations (issue 16, "Job operations"): `vfl jobs`, `vfl jobs show`, `vfl attach`, `vfl cancel`, the same
through `vfl.api.Client`, and Ctrl-C on `vfl run` saying how to re-attach, with real node processes.

Before: none of these commands existed; after Ctrl-C on `vfl run` the job ran on unseen, and the node's WatchJob
RPC was exposed neither by the CLI nor by the API.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from tests.node.conftest import SMALL_JOB, breast_parties

# plaintext mode (the nodes allow it for tests): these tests are about the job's lifecycle, not its crypto
JOB = copy.deepcopy(SMALL_JOB)
JOB["crypto"] = {"mode": "plaintext"}
JOB["privacy"] = {"defense": "none"}


def vfl_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfl.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    from vfl.api import Federation
    with Federation(breast_parties(), workdir=tmp_path_factory.mktemp("jobs-fed"), secret_seed=3) as federation:
        yield federation


def long_job(fed, job_id: str, epochs: int):
    """Start a training job in a thread; return (thread, outcome, first-epoch event)."""
    from vfl.api import JobError
    outcome: dict = {}
    first_epoch = threading.Event()

    def on_event(event):
        if event.kind == "epoch":
            first_epoch.set()

    def run():
        try:
            outcome["result"] = fed.fit(job_id=job_id, progress=False, on_event=on_event,
                                        **{**JOB, "train": {**JOB["train"], "epochs": epochs}}).metrics
        except JobError as exc:
            outcome["error"] = str(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert first_epoch.wait(120), "the job never finished an epoch"
    return thread, outcome


def test_vfl_jobs_lists_and_shows_jobs_at_both_nodes(fed):
    fed.psi(job_id="listed-psi", progress=False)
    active, passive = str(fed.configs["guest"]), str(fed.configs["host"])
    out = vfl_cli("jobs", "--config", active)
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split()[:5] == ["JOB", "KIND", "ROLE", "STATE", "STAGE"]
    row = next(r for r in rows if r.startswith("listed-psi "))
    assert row.split()[1:4] == ["psi", "active", "succeeded"], row
    listed = json.loads(vfl_cli("jobs", "--config", passive, "--json").stdout)
    job = next(j for j in listed if j["job_id"] == "listed-psi")
    assert (job["role"], job["state"], job["active"]) == ("passive", "succeeded", "guest")
    assert job["finished"] >= job["created"] > 0
    shown = vfl_cli("jobs", "show", "listed-psi", "--config", active)
    assert shown.returncode == 0, shown.stderr
    assert "state:    succeeded at stage done" in shown.stdout and "common:   " in shown.stdout, shown.stdout
    missing = vfl_cli("jobs", "show", "no-such-job", "--config", active)
    assert missing.returncode == 1 and "no job 'no-such-job'" in missing.stderr
    assert vfl_cli("jobs", "frobnicate", "--config", active).returncode == 2


def test_the_client_lists_shows_and_attaches(fed):
    """The same operations through vfl.api.Client: jobs(), job(), attach() (to a job that ended, too)."""
    from vfl.api import Client
    thread, outcome = long_job(fed, "api-attach", epochs=6)
    client = Client.from_node_config(fed.configs["guest"])
    try:
        running = {j["job_id"]: j for j in client.jobs()}["api-attach"]
        assert running["state"] == "running" and running["kind"] == "train"
        events = []
        result = client.attach("api-attach", progress=False, on_event=events.append)
        thread.join(60)
        assert result["test"] == outcome["result"]["test"]
        assert events[0].kind == "log" and "opening job" in events[0].message  # from the job's start
        detail = client.job("api-attach")
        assert detail["state"] == "succeeded" and detail["result"]["test"] == result["test"]
        assert any(e["kind"] == "epoch" for e in detail["events"])
        assert client.attach("api-attach", progress=False)["test"] == result["test"]  # after its end
    finally:
        client.close()


def test_the_client_cancels_a_job_at_every_party(fed):
    """Client.cancel (what `vfl cancel` calls): the job's status comes back cancelled, the submitter's stream ends
    with the reason, and the passive node lists the job as cancelled too."""
    from vfl.api import Client
    thread, outcome = long_job(fed, "api-cancel", epochs=400)
    client = Client.from_node_config(fed.configs["guest"])
    try:
        shown = client.cancel("api-cancel")
    finally:
        client.close()
    assert shown["state"] == "cancelled" and "cancelled by" in shown["reason"], shown
    thread.join(60)
    assert "cancelled" in outcome.get("error", ""), outcome
    passive = Client.from_node_config(fed.configs["host"])
    try:
        assert {j["job_id"]: j for j in passive.jobs()}["api-cancel"]["state"] == "cancelled"
    finally:
        passive.close()


def test_vfl_cancel_stops_the_job_at_every_party(fed):
    thread, outcome = long_job(fed, "to-cancel", epochs=400)
    out = vfl_cli("cancel", "to-cancel", "--config", str(fed.configs["guest"]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("job to-cancel: cancelled"), out.stdout
    thread.join(60)
    assert "cancelled" in outcome.get("error", ""), outcome
    for party in ("guest", "host"):
        job_dir = fed.workdir / party / "jobs" / "to-cancel"
        found = json.loads((job_dir / "status.json").read_text())
        assert found["state"] == "cancelled" and "cancelled by" in found["reason"], (party, found)
        assert not (job_dir / "model").exists() and not (job_dir / "staged").exists()
    shown = json.loads(vfl_cli("jobs", "show", "to-cancel", "--config", str(fed.configs["host"]), "--json").stdout)
    assert shown["state"] == "cancelled"
    again = vfl_cli("cancel", "to-cancel", "--config", str(fed.configs["guest"]))
    assert again.returncode == 1 and "already cancelled" in again.stderr


def test_ctrl_c_on_vfl_run_says_how_to_reattach_and_vfl_attach_does(fed, tmp_path):
    spec = {"job_id": "interrupted-run", "kind": "train", "task": "binary", "active": "guest",
            "parties": {"guest": {"dataset": "table"}, "host": {"dataset": "table"}},
            **{**JOB, "train": {**JOB["train"], "epochs": 8}}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    active = str(fed.configs["guest"])
    run = subprocess.Popen([sys.executable, "-m", "vfl.cli.main", "run", str(path), "--config", active],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = run.stderr.readline()
        seen.append(line)
        if line.startswith("epoch 1/"):
            break
    else:
        run.kill()
        pytest.fail(f"vfl run showed no epoch: {seen[-5:]}")
    # The passive node is held (SIGSTOP) while Ctrl-C reaches `vfl run`, so the job is surely still running then:
    # on a loaded machine a small job could otherwise finish before the signal lands. It resumes on SIGCONT.
    host = fed.processes["host"]
    host.send_signal(signal.SIGSTOP)
    try:
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        host.send_signal(signal.SIGCONT)
    assert run.returncode == 130, (run.returncode, stderr)
    assert f"vfl attach interrupted-run --config {active}" in stderr, stderr
    assert "keeps running" in stderr and f"vfl cancel interrupted-run --config {active}" in stderr
    attached = vfl_cli("attach", "interrupted-run", "--config", active, "--json")
    assert attached.returncode == 0, attached.stderr
    result = json.loads(attached.stdout)
    assert [h["epoch"] for h in result["history"]] == list(range(1, 9)) and result["test"]["auc"] > 0.9
