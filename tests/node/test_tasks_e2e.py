"""Multiclass and regression jobs end to end through the Python API, with real node processes and Paillier."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

JOB = {"model": {"bottom": {"hidden": [16], "out": 8}, "interactive": {"out": 8}, "top": {"hidden": [8]}},
       "split": {"validation": 0.1, "test": 0.25, "seed": 4},
       "crypto": {"key_bits": 1024}}


def _split_columns(frame: pd.DataFrame, guest_columns: list[str], label: str, drop_host: float = 0.1):
    """Columns split between an active party (with the label) and a passive one missing some rows."""
    from vfl.api import Party
    guest = frame[["id", *guest_columns, label]]
    host = frame.drop(columns=[*guest_columns, label]).sample(frac=1 - drop_host, random_state=5)
    return [Party("guest", guest, label=label), Party("host", host)]


def test_multiclass_reports_accuracy(tmp_path):
    from sklearn.datasets import load_wine
    from vfl.api import Federation
    wine = load_wine(as_frame=True)
    frame = wine.data.copy()
    frame.insert(0, "id", [f"w{i:04d}" for i in range(len(frame))])
    frame["cultivar"] = [f"cultivar-{wine.target_names[t]}" for t in wine.target]  # string classes
    parties = _split_columns(frame, list(wine.data.columns[:6]), "cultivar")
    job = {**JOB, "train": {"epochs": 12, "batch_size": 32, "lr": 0.02, "interactive_lr": 0.1, "seed": 1}}
    with Federation(parties, workdir=tmp_path / "fed") as fed:
        model = fed.fit(task="multiclass", job_id="wine", progress=False, **job)
        test = model.metrics["test"]
        assert set(test) == {"accuracy"}
        assert test["accuracy"] >= 0.85, test
        assert all("validation_accuracy" in h for h in model.metrics["history"])
        guest, host = parties[0].data, parties[1].data
        new_guest, new_host = guest.head(50), host[host["id"].isin(guest.head(50)["id"])]
        predictions = model.predict({"guest": new_guest.drop(columns=["cultivar"]), "host": new_host})
        probabilities = predictions[["p0", "p1", "p2"]].to_numpy()
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        # class k is the k-th of the sorted label values
        classes = sorted(guest["cultivar"].unique())
        truth = new_guest.set_index("id").loc[predictions["id"], "cultivar"].map(classes.index).to_numpy()
        evaluated = model.evaluate({"guest": new_guest, "host": new_host})
        assert evaluated == pytest.approx({"accuracy": float((probabilities.argmax(axis=1) == truth).mean())})


def test_regression_reports_rmse(tmp_path):
    from vfl.api import Federation
    rng = np.random.default_rng(7)
    n = 400
    x = rng.normal(size=(n, 6))
    y = x[:, :3] @ np.array([1.0, -0.7, 0.5]) + x[:, 3:] @ np.array([0.8, 0.6, -0.4]) \
        + 0.5 * np.sin(2 * x[:, 0]) + rng.normal(scale=0.1, size=n)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    frame.insert(0, "id", [f"r{i:05d}" for i in range(n)])
    frame["target"] = y
    parties = _split_columns(frame, ["f0", "f1", "f2"], "target")
    job = {**JOB, "train": {"epochs": 10, "batch_size": 32, "lr": 0.02, "interactive_lr": 0.05, "seed": 1}}
    with Federation(parties, workdir=tmp_path / "fed") as fed:
        model = fed.fit(task="regression", job_id="synthetic", progress=False, **job)
        test = model.metrics["test"]
        assert set(test) == {"rmse"}
        assert test["rmse"] < 0.4 * y.std(), (test, y.std())   # far better than predicting the mean
        guest, host = parties[0].data, parties[1].data
        new_guest, new_host = guest.tail(80), host[host["id"].isin(guest.tail(80)["id"])]
        predictions = model.predict({"guest": new_guest.drop(columns=["target"]), "host": new_host})
        truth = new_guest.set_index("id").loc[predictions["id"], "target"].to_numpy()
        rmse = float(np.sqrt(np.mean((predictions["prediction"].to_numpy() - truth) ** 2)))
        assert model.evaluate({"guest": new_guest, "host": new_host}) == pytest.approx({"rmse": rmse})
