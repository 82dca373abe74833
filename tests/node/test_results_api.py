"""What `Federation` hands a data scientist, with real node processes: the history as a DataFrame, the plots, the
positive class, and predictions keyed by the user's own ID column with its values and dtype."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vfl.api import Federation, Party, UnmatchedRowsWarning

JOB = {"model": {"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [8]}},
       "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "interactive_lr": 0.1, "seed": 1},
       "crypto": {"mode": "plaintext"}}


def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """breast, with integer patient numbers under `patient_id` and the label as text ('benign' / 'malignant')."""
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    ids = np.arange(7000, 7000 + len(data.target), dtype=np.int64)
    a = pd.DataFrame(data.data[:, :10], columns=[f"a{i}" for i in range(10)])
    a.insert(0, "patient_id", ids)
    a["diagnosis"] = np.where(data.target == 1, "benign", "malignant")
    b = pd.DataFrame(data.data[:, 10:], columns=[f"b{i}" for i in range(20)])
    b.insert(0, "patient_id", ids)
    return a, b


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    a, b = tables()
    parties = [Party("clinic", a.iloc[:450], id_column="patient_id", label="diagnosis"),
               Party("lab", b.iloc[:450], id_column="patient_id")]
    with Federation(parties, workdir=tmp_path_factory.mktemp("results"), secure_transport=False) as fed:
        yield fed


def test_fit_returns_history_plots_and_positive_class(federation):
    model = federation.fit(job_id="results-fit", progress=False, positive_class="malignant", **JOB)
    history = model.history
    assert isinstance(history, pd.DataFrame) and list(history.index) == [1, 2, 3]
    assert {"loss", "validation_auc"} <= set(history.columns)
    assert set(model.plots) == {"learning_curves", "roc"}
    for path in model.plots.values():
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert model.metrics["positive_class"] == "malignant" and model.metrics["test"]["auc"] > 0.9

    a, b = tables()
    new_a, new_b = a.iloc[450:].drop(columns=["diagnosis"]), b.iloc[460:]   # 10 of the clinic's rows lack lab data
    with pytest.warns(UnmatchedRowsWarning, match="10 row"):
        scores = model.predict({"clinic": new_a, "lab": new_b})
    assert list(scores.columns) == ["patient_id", "prediction"]
    assert scores["patient_id"].dtype == np.int64                            # the user's type, not text
    assert set(scores["patient_id"]) == set(new_b["patient_id"])
    assert scores.attrs["unmatched_rows"] == 10
    # P(malignant): it joins the user's table on its own ID column as it is
    truth = new_a[["patient_id"]].merge(scores, on="patient_id").merge(
        a[["patient_id", "diagnosis"]], on="patient_id")
    assert len(truth) == len(scores)
    assert truth.groupby("diagnosis")["prediction"].mean()["malignant"] > 0.5

