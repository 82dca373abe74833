"""What the results options of a job (issue 16, "Results") let a passive party learn, against the passive party.

Holds: its node config and table, and everything its node received, sent, wrote and logged for the job: every Party
request and reply as the in-process link delivers it (tests/job/local.py; the messages and runtimes are the
production ones), every file under its node's home (accepted spec, checkpoints, model part, report) and its log.

1. The positive class (`positive_class`) names one of the active party's label values.
   Tries: to find that value, or any label value, in what it holds.
   Learns: neither: the spec it receives has no positive class (JobSpec.for_peers). A planted control that sends
   the active party's own spec (as before for_peers) is caught.

2. Early stopping (`train.early_stopping`) decides from the active party's validation metric, a function of its labels.
   Tries: to tell apart two runs whose validation metric moved differently but which stopped after the same epoch E
   and kept the same epoch k, from every non-random field it holds (everything but ciphertexts, keys and masked
   values, which are fresh random numbers in every run), and to find any validation value in what it holds.
   Learns: E and k only (docs/protocol.md bounds it: at most log2(2 x epochs) bits a job): the two runs look the
   same, a run with another k does not, and no validation value appears. A planted control (a "disk-saving"
   runtime that checkpoints only the epochs that improved, telling the passive party each improvement through
   EndEpochRequest.checkpoint) is caught by the same comparison.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from tests.job.conftest import breast_tables, job_spec
from tests.job.local import run_local_job
from vfl.job.active import ActiveJob
from vfl.job.spec import JobSpec
from vfl.job.stopping import Stopping
from vfl.node.config import parse_node_config

PASSIVE_LOGGERS = ("vfl.passive", "vfl.jobs")
BENIGN, MALIGNANT = "benign-k4q", "malignant-z7w"


def party_configs(root: Path, label_names: tuple[str, str] | None = None) -> dict:
    guest, host = breast_tables()
    if label_names is not None:
        guest["y"] = [label_names[int(y)] for y in guest["y"]]
    out = {}
    for name, table, label in (("guest", guest, "y"), ("host", host, None)):
        home = root / name
        (home / "data").mkdir(parents=True)
        table.to_csv(home / "data" / "table.csv", index=False)
        dataset = {"path": "table.csv", "id": "id", **({"label": label} if label else {})}
        out[name] = parse_node_config({"party": name, "role": "active" if label else "passive", "insecure": True,
                                       "datasets": {"table": dataset}, "policy": {"min_key_bits": 1024},
                                       "workers": 1}, home)
    return out


class PassiveHoldings:
    """Every message the passive party received or sent (in order), and, after the run, its files and log."""

    def __init__(self):
        self.messages: list[object] = []

    def tamper(self, peer: str, message: object) -> object:
        self.messages.append(message)
        return message

    def text(self, home: Path, log: str) -> str:
        from vfl.data import sealed   # its own files as it reads them (sealed ones opened with its key)
        files = [sealed.read_bytes(p).decode("latin-1") for p in sorted(home.rglob("*")) if p.is_file()]
        return "\n".join([log, *map(repr, self.messages), *files])


def passive_log(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name in PASSIVE_LOGGERS)


# ---------------------------------------------------------------------------------------------- positive class

def positive_class_run(tmp_path: Path, caplog) -> str:
    configs = party_configs(tmp_path, (BENIGN, MALIGNANT))
    holdings = PassiveHoldings()
    with caplog.at_level(logging.INFO):
        result = run_local_job(job_spec("positive-role", train={"epochs": 1, "batch_size": 128},
                                        positive_class=MALIGNANT), configs, tamper=holdings.tamper)
    assert result["positive_class"] == MALIGNANT   # the run did use it
    return holdings.text(configs["host"].jobs_dir.parent, passive_log(caplog))


def test_passive_party_learns_neither_the_positive_class_nor_the_label_values(tmp_path, caplog):
    held = positive_class_run(tmp_path, caplog)
    assert "OpenJob" in held and "checkpoints" in held     # it holds the messages and its files
    for secret in (MALIGNANT, BENIGN, "positive_class"):
        assert secret not in held, secret


def test_control_sending_the_whole_spec_is_caught(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(JobSpec, "for_peers", lambda self: self)
    with pytest.raises(AssertionError):
        test_passive_party_learns_neither_the_positive_class_nor_the_label_values(tmp_path, caplog)


# ---------------------------------------------------------------------------------------------- early stopping

# validation AUC per epoch (0-based). A and B improve at different epochs but both keep epoch 3 and stop after 5
# (patience 2); C keeps epoch 4 and stops after 6. The digits are distinctive, so a leaked value would be found.
TRAJECTORIES = {"A": [0.611347, 0.712753, 0.814139, 0.753917, 0.703719, 0.702391, 0.701573],
                "B": [0.823137, 0.724359, 0.845731, 0.806917, 0.806371, 0.805129, 0.804793],
                "C": [0.631753, 0.732917, 0.752369, 0.833791, 0.803317, 0.801193, 0.800457]}


def _public(value):
    """A message field as the comparison sees it: ciphertexts, keys and masked values (bytes: fresh random numbers in
    every run, and a masked value's encoding varies in length with it) as a marker; every other field as it is."""
    return "random bytes" if isinstance(value, (bytes, bytearray)) else value


BACKWARD = ("WeightGradientRequest", "WeightGradientReply", "InputGradientRequest", "InputGradientReply")


def public_view(holdings: PassiveHoldings, log: str, job_dir: Path) -> list:
    """Everything non-random the passive party holds: each message's type and public fields, in order; the names of
    its job's files; its log. The report in CloseJobReply is left to its message kinds (byte counts follow the
    ciphertexts' lengths). A step's two backward calls run concurrently, so each step's are put in one order."""
    view: list = []
    for message in holdings.messages:
        fields = {f.name: _public(getattr(message, f.name)) for f in dataclasses.fields(message)}
        if "report_json" in fields:
            fields["report_json"] = "report"
        view.append((type(message).__name__, fields))
    i = 0
    while i < len(view):   # sort each run of backward messages (one step's) by its text
        j = i
        while j < len(view) and view[j][0] in BACKWARD:
            j += 1
        view[i:j] = sorted(view[i:j], key=repr)
        i = max(j, i + 1)
    files = sorted(str(p.relative_to(job_dir)) for p in job_dir.rglob("*") if p.is_file())
    return [view, files, log.splitlines()]


def stopping_run(root: Path, caplog, monkeypatch, trajectory: str) -> tuple[list, str]:
    configs = party_configs(root)
    values = TRAJECTORIES[trajectory]
    real = ActiveJob.evaluate

    def evaluate(self, positions, epoch):   # the validation AUC the script says; the runtimes run as they do
        metrics = real(self, positions, epoch)
        if positions is self.data.split.validation:
            metrics["auc"] = values[epoch]
        return metrics
    monkeypatch.setattr(ActiveJob, "evaluate", evaluate)
    holdings = PassiveHoldings()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = run_local_job(job_spec("stop-role", train={"epochs": 7, "batch_size": 128, "seed": 1,
                                                            "early_stopping": {"patience": 2}}),
                               configs, tamper=holdings.tamper)
    expected = {"A": (5, 3), "B": (5, 3), "C": (6, 4)}[trajectory]
    assert (result["epochs_run"], result["early_stopping"]["kept_epoch"]) == expected
    log = passive_log(caplog)
    job_dir = configs["host"].job_dir("stop-role")
    return public_view(holdings, log, job_dir), holdings.text(configs["host"].jobs_dir.parent, log)


def careless_checkpoints(monkeypatch) -> None:
    """The planted flaw: checkpoint only epochs that improved the validation metric, and tell the peers so."""
    def end_epoch(self, completed: int) -> None:
        stopping = Stopping.of(self.spec.train.early_stopping, self.spec.task)
        improved = completed == 0 or stopping.best_epoch(self.metrics_history) == completed
        if improved:
            self._checkpoint(completed)
        self.each_link(lambda link: link.end_epoch(completed, improved))
    monkeypatch.setattr(ActiveJob, "_end_epoch", end_epoch)


def test_passive_party_learns_only_when_training_stopped_and_which_epoch_was_kept(tmp_path, caplog, monkeypatch):
    view_a, held_a = stopping_run(tmp_path / "a", caplog, monkeypatch, "A")
    view_b, held_b = stopping_run(tmp_path / "b", caplog, monkeypatch, "B")
    assert view_a == view_b                                 # different validation progress, the same view
    for trajectory, held in (("A", held_a), ("B", held_b)):
        for value in TRAJECTORIES[trajectory]:
            assert f"{value}" not in held, (trajectory, value)
    view_c, _ = stopping_run(tmp_path / "c", caplog, monkeypatch, "C")
    assert view_c != view_a                                 # what it does learn: E and k (documented, bounded)
    reopened = [fields["resume_epoch"] for kind, fields in view_a[0] if kind == "OpenJob"]
    assert reopened == [-1, 3]                              # k reaches it as the resume epoch of a second OpenJob


def test_control_checkpoints_only_on_improvement_is_caught(tmp_path, caplog, monkeypatch):
    careless_checkpoints(monkeypatch)
    view_a, _ = stopping_run(tmp_path / "a", caplog, monkeypatch, "A")
    view_b, _ = stopping_run(tmp_path / "b", caplog, monkeypatch, "B")
    assert view_a != view_b
