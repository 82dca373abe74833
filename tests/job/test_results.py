"""What a training or prediction job hands its user (issue 16, "Results"), with the real runtimes in one process:
plots beside result.json, the batch sized to the table, the one-batch warning, the chosen positive class,
predictions under the user's own ID column, and early stopping that keeps one epoch at every party."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.job.conftest import breast_tables, job_spec
from tests.job.local import run_local_job
from vfl.errors import ConfigError, DataError
from vfl.job import checkpoint, plots
from vfl.job.active import ActiveJob
from vfl.node.config import parse_node_config

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path: str | Path) -> bytes:
    data = Path(path).read_bytes()
    assert data.startswith(PNG) and len(data) > 2000, path   # a drawn figure, not an empty file
    return data


def test_training_writes_learning_curves_and_roc_beside_its_result(configs):
    result = run_local_job(job_spec("plots-1", crypto={"mode": "plaintext"}), configs)
    job_dir = configs["guest"].job_dir("plots-1")
    assert result["plots"] == {"learning_curves": str(job_dir / plots.LEARNING_CURVES), "roc": str(job_dir / plots.ROC)}
    _png(result["plots"]["learning_curves"])
    _png(result["plots"]["roc"])
    assert json.loads((job_dir / "result.json").read_text())["plots"] == result["plots"]
    # only the active party draws them: the passive party's job directory has none
    assert not list(configs["host"].job_dir("plots-1").glob("*.png"))


def test_a_regression_job_has_learning_curves_and_no_roc(configs):
    result = run_local_job(job_spec("plots-2", task="regression", crypto={"mode": "plaintext"}), configs)
    assert set(result["plots"]) == {"learning_curves"}
    _png(result["plots"]["learning_curves"])


def test_the_roc_plot_is_the_curve_of_the_test_predictions(tmp_path):
    """write_roc draws roc_curve of the scores it is given: the area under what it drew is their AUC."""
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(labels * 0.3 + rng.normal(0.35, 0.25, 300), 0, 1)
    area = plots.write_roc(labels, scores, tmp_path / "roc.png", "1")
    assert area == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert plots.write_roc(1 - labels, scores, tmp_path / "flipped.png", "0") == pytest.approx(1 - area, abs=1e-12)
    _png(tmp_path / "roc.png")


def test_history_is_a_dataframe_by_epoch(configs):
    from vfl.api import history_frame
    result = run_local_job(job_spec("history-1", crypto={"mode": "plaintext"}), configs)
    frame = history_frame(result)
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == [1, 2, 3]
    assert {"loss", "validation_auc", "validation_accuracy"} <= set(frame.columns)
    assert frame.loc[3, "validation_auc"] == result["history"][2]["validation_auc"]


# ---------------------------------------------------------------------------------------------- batch size

def test_the_default_batch_is_sized_to_the_table(configs):
    """No train.batch_size: 349 training rows -> ceil(349 / 16) = 22, raised to the floor of 32 (11 steps an epoch);
    it used to be one batch of 512."""
    from vfl.job.spec import parse_job_spec, spec_to_yaml_dict
    raw = spec_to_yaml_dict(job_spec("auto-batch-1", crypto={"mode": "plaintext"}))
    del raw["train"]["batch_size"]
    spec = parse_job_spec(raw)
    assert spec.train.batch_size is None and spec.train.max_batch_size == 512
    result = run_local_job(spec, configs)
    assert result["split"]["train"] == 349 and result["batch_size"] == 32
    assert "warnings" not in result


def test_effective_batch_size_rule():
    from vfl.job.split import effective_batch_size
    assert effective_batch_size(None, 786) == 50          # the table: 16 steps an epoch
    assert effective_batch_size(None, 100) == 32          # the floor
    assert effective_batch_size(None, 1_000_000) == 512   # the cap: large tables keep the old default
    assert effective_batch_size(512, 100) == 512          # an explicit batch size is kept


def test_an_epoch_of_one_batch_is_warned_about(configs):
    result = run_local_job(job_spec("one-batch-1", train={"epochs": 1, "batch_size": 512},
                                    crypto={"mode": "plaintext"}), configs)
    assert result["batch_size"] == 512
    assert any("an epoch is a single batch" in w and "349 training rows" in w for w in result["warnings"]), result


# ---------------------------------------------------------------------------------------------- positive class

def test_the_positive_class_can_be_chosen(configs):
    """breast's label is 0 (malignant) / 1 (benign): by default P(1) is predicted; positive_class '0' predicts P(0)."""
    default = run_local_job(job_spec("positive-default", crypto={"mode": "plaintext"}), configs)
    chosen = run_local_job(job_spec("positive-0", crypto={"mode": "plaintext"}, positive_class="0"), configs)
    assert default["positive_class"] == "1" and chosen["positive_class"] == "0"
    assert chosen["test"]["auc"] > 0.85
    schema = json.loads((checkpoint.model_dir(configs["guest"].job_dir("positive-0")) / "schema.json").read_text())
    assert schema["label_classes"] == ["1", "0"]
    predicted = run_local_job(job_spec("positive-0-predict", kind="predict", model_job="positive-0"), configs)
    assert predicted["positive_class"] == "0" and predicted["metrics"]["auc"] > 0.85
    frame = pd.read_csv(predicted["predictions"], dtype={"id": str})
    guest, _ = breast_tables()
    y = frame["id"].map(dict(zip(guest["id"], guest["y"])))
    assert frame["prediction"][y == 0].mean() > 0.5 > frame["prediction"][y == 1].mean()  # P(malignant)


def test_a_positive_class_the_label_lacks_is_refused(configs):
    with pytest.raises(DataError, match=r"positive_class '7' is not one of its label values \['0', '1'\]"):
        run_local_job(job_spec("positive-7", crypto={"mode": "plaintext"}, positive_class="7"), configs)


@pytest.mark.parametrize("changes, message", [
    ({"task": "multiclass", "positive_class": "1"}, "only a binary training job chooses its positive class"),
    ({"kind": "predict", "model_job": "m", "positive_class": "1"}, "only a binary training job"),
    ({"positive_class": True}, "reads as a boolean in YAML; quote"),
    ({"positive_class": 0.5}, "must be one of the label column's values as text"),
    ({"positive_class": " "}, "must be one of the label column's values as text"),
])
def test_positive_class_is_validated(changes, message):
    with pytest.raises(ConfigError, match=message):
        job_spec("positive-bad", **changes)


def test_the_positive_class_is_not_in_the_spec_the_passive_parties_receive():
    spec = job_spec("positive-peers", positive_class="0")
    assert "positive_class: '0'" in spec.to_yaml()
    assert "positive_class" not in spec.for_peers().to_yaml()


# ---------------------------------------------------------------------------------------------- predictions

@pytest.fixture
def id_configs(tmp_path: Path) -> dict:
    """The breast tables with the guest's IDs as integers written '1040.0'-style under `customer_no` (its dataset's
    id_format makes them '1040', the host's form), and 40 guest rows the host lacks."""
    guest, host = breast_tables()
    number = {pid: 1000 + i for i, pid in enumerate(guest["id"])}
    guest = guest.rename(columns={"id": "customer_no"})
    guest["customer_no"] = [f"{number[p]}.0" for p in guest["customer_no"]]
    host["id"] = [str(number[p]) for p in host["id"]]
    host = host.iloc[10:]
    out = {}
    for name, table, dataset in (
            ("guest", guest, {"id": "customer_no", "label": "y", "id_format": {"integer": True}}),
            ("host", host, {"id": "id"})):
        home = tmp_path / name
        (home / "data").mkdir(parents=True)
        table.to_csv(home / "data" / "table.csv", index=False)
        out[name] = parse_node_config({"party": name, "role": "active" if name == "guest" else "passive",
                                       "insecure": True, "datasets": {"table": {"path": "table.csv", **dataset}},
                                       "policy": {"allow_plaintext": True, "min_key_bits": 1024}, "workers": 1}, home)
    return out


def test_predictions_keep_the_id_column_and_count_the_unmatched_rows(id_configs):
    run_local_job(job_spec("ids-train", crypto={"mode": "plaintext"}, train={"epochs": 1}), id_configs)
    result = run_local_job(job_spec("ids-predict", kind="predict", model_job="ids-train"), id_configs)
    frame = pd.read_csv(result["predictions"], dtype=str)
    assert list(frame.columns) == ["customer_no", "prediction"]
    assert result["id_column"] == "customer_no"
    assert frame["customer_no"].str.endswith(".0").all()      # as the guest's file writes them, not '1040'
    guest = pd.read_csv(id_configs["guest"].data_dir / "table.csv", dtype=str)
    assert set(frame["customer_no"]) <= set(guest["customer_no"])
    assert len(frame) == 569 - 30 - 10 and result["rows"] == len(frame)
    assert result["unmatched_rows"] == 569 - len(frame)      # the guest's rows PSI found at no host


def test_a_prediction_column_never_takes_the_id_columns_name():
    from vfl.job.active import prediction_frame
    frame = prediction_frame("prediction", np.array(["a", "b"], dtype=object), np.array([0.2, 0.9]))
    assert list(frame.columns) == ["prediction", "prediction_"]
    frame = prediction_frame("p0", np.array(["a"], dtype=object), np.array([[0.2, 0.8]]))
    assert list(frame.columns) == ["p0", "p0_", "p1_"]


# ---------------------------------------------------------------------------------------------- early stopping

def scripted_validation(monkeypatch, values: list[float], metric: str = "auc") -> None:
    """The validation metric of epoch i (0-based) becomes values[i]: the runtimes run as they do, only the number
    early stopping reads is fixed, so a test knows which epoch is best."""
    real = ActiveJob.evaluate

    def evaluate(self, positions, epoch):
        metrics = real(self, positions, epoch)
        if positions is self.data.split.validation:
            metrics[metric] = values[epoch]
        return metrics
    monkeypatch.setattr(ActiveJob, "evaluate", evaluate)


def _same_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if hasattr(a, "__dict__"):
        return _same_state(vars(a), vars(b))
    return a == b


def test_early_stopping_keeps_the_best_epoch_at_every_party(configs, monkeypatch):
    """AUC 0.70, 0.80, 0.75, 0.78 with patience 2: training stops after epoch 4 and every party keeps epoch 2 -- the
    active party's models and its shares of W, the passive party's bottom model and its share of W."""
    scripted_validation(monkeypatch, [0.70, 0.80, 0.75, 0.78, 0.9, 0.9])
    result = run_local_job(job_spec("stop-1", train={"epochs": 6, "batch_size": 64, "lr": 0.05,
                                                     "interactive_lr": 0.1, "seed": 1,
                                                     "early_stopping": {"patience": 2}}), configs)
    assert result["epochs_run"] == 4 and len(result["history"]) == 4
    assert result["early_stopping"] == {"metric": "validation_auc", "kept_epoch": 2, "best_value": 0.8,
                                        "stopped_early": True}
    guest_dir, host_dir = configs["guest"].job_dir("stop-1"), configs["host"].job_dir("stop-1")
    guest_part = torch.load(checkpoint.model_part_path(guest_dir), weights_only=False)
    host_part = torch.load(checkpoint.model_part_path(host_dir), weights_only=False)
    guest_at = {e: checkpoint.load_checkpoint(guest_dir, e, "guest") for e in (2, 4)}
    host_at = {e: checkpoint.load_checkpoint(host_dir, e, "host") for e in (2, 4)}
    assert _same_state(guest_part["model"], guest_at[2]["model"])
    assert _same_state(guest_part["links"], guest_at[2]["links"])
    assert _same_state(host_part["bottom"], host_at[2]["bottom"])
    assert _same_state(host_part["share"], host_at[2]["share"])
    # ... and epoch 2 is not what the job ended training with: the comparison can fail
    assert not _same_state(guest_part["model"], guest_at[4]["model"])
    assert not _same_state(host_part["share"], host_at[4]["share"])
    assert result["test"]["auc"] > 0.85


def test_early_stopping_that_never_triggers_keeps_the_best_epoch(configs, monkeypatch):
    """Rmse (lower is better) improving to the last epoch: all epochs run, nothing to go back to."""
    scripted_validation(monkeypatch, [0.5, 0.4, 0.3], metric="rmse")
    result = run_local_job(job_spec("stop-2", task="regression", crypto={"mode": "plaintext"},
                                    train={"epochs": 3, "batch_size": 64, "early_stopping": {"patience": 1}}), configs)
    assert result["epochs_run"] == 3
    assert result["early_stopping"] == {"metric": "validation_rmse", "kept_epoch": 3, "best_value": 0.3,
                                        "stopped_early": False}


@pytest.mark.parametrize("changes, message", [
    ({"split": {"validation": 0.0, "test": 0.2}}, "needs a validation split"),
    ({"train": {"checkpoint": False, "early_stopping": {"patience": 2}}}, "needs train.checkpoint: true"),
    ({"privacy": {"attacks": True}}, "cannot be combined with privacy.attacks"),
    ({"train": {"early_stopping": {"patience": 0}}}, r"train.early_stopping.patience: must be >= 1"),
    ({"train": {"early_stopping": {"metric": "rmse"}}}, r"train.early_stopping.metric: must be one of"),
    ({"train": {"early_stopping": {"patiense": 3}}}, r"train.early_stopping.patiense: unknown key"),
])
def test_early_stopping_is_validated(changes, message):
    base = {"train": {"early_stopping": {"patience": 2}}}
    with pytest.raises(ConfigError, match=message):
        job_spec("stop-bad", **{**base, **changes})


def test_early_stopping_round_trips_through_the_spec_a_peer_receives():
    from vfl.job.spec import parse_job_spec_yaml
    spec = job_spec("stop-yaml", train={"epochs": 9, "early_stopping": {"patience": 3, "min_delta": 0.01}})
    assert parse_job_spec_yaml(spec.for_peers().to_yaml()) == spec


def test_a_plot_that_cannot_be_drawn_is_a_warning_not_a_failed_job(configs, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no fonts here")
    monkeypatch.setattr(plots, "write_learning_curves", broken)
    result = run_local_job(job_spec("plots-broken", crypto={"mode": "plaintext"}, train={"epochs": 1}), configs)
    assert result["plots"] == {} and result["test"]["auc"] > 0.5
    assert any("plots not written: RuntimeError: no fonts here" in w for w in result["warnings"])
    assert checkpoint.model_part_path(configs["guest"].job_dir("plots-broken")).exists()
