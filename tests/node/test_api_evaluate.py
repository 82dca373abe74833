"""Federation.evaluate and the Client's job helpers, with real node processes."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from tests.node.conftest import SMALL_JOB, breast_parties
from vfl.api import read_job_file
from vfl.errors import ConfigError


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from vfl.api import Federation
    with Federation(breast_parties(), workdir=tmp_path_factory.mktemp("fed")) as fed:
        yield fed


@pytest.fixture(scope="module")
def model(federation):
    return federation.fit(task="binary", job_id="to-evaluate", progress=False, **SMALL_JOB)


def _new_rows(federation, n=120):
    guest, host = (federation.parties[p].data for p in ("guest", "host"))
    new_guest = guest.tail(n)                            # with the label column
    new_host = host[host["id"].isin(new_guest["id"])]    # PSI drops the guest rows the host lacks
    return new_guest, new_host


def test_evaluate_equals_metrics_of_predict_against_labels(federation, model):
    from vfl.models.tasks import Task
    new_guest, new_host = _new_rows(federation)
    metrics = model.evaluate({"guest": new_guest, "host": new_host}, job_id="eval-1")
    assert set(metrics) == set(model.metrics["test"]) == {"auc", "accuracy"}
    predictions = model.predict({"guest": new_guest.drop(columns=["y"]), "host": new_host}, job_id="pred-1")
    labels = new_guest.set_index("id").loc[predictions["id"], "y"].to_numpy()
    expected = Task("binary", 1, 2).metrics(predictions["prediction"].to_numpy(), labels)
    assert metrics == pytest.approx(expected, rel=1e-9)
    assert len(predictions) == len(set(new_guest["id"]) & set(new_host["id"])) < len(new_guest)
    # the same through the federation with a job id instead of the model object
    assert federation.evaluate("to-evaluate", {"guest": new_guest, "host": new_host}) == pytest.approx(metrics)


def test_evaluate_needs_the_label_and_every_party(federation, model):
    new_guest, new_host = _new_rows(federation, 20)
    with pytest.raises(ConfigError, match="label column 'y'"):
        model.evaluate({"guest": new_guest.drop(columns=["y"]), "host": new_host})
    with pytest.raises(ConfigError, match=r"missing for parties \['host'\]"):
        model.evaluate({"guest": new_guest})


def test_client_helpers_run_psi_fit_predict_evaluate(federation, model):
    """The remote Client's helpers name each party's dataset as registered in that party's node config."""
    from vfl.api import Client
    client = Client.from_node_config(federation.configs["guest"])
    try:
        assert client.party == "guest"   # the default active party
        datasets = {"guest": "table", "host": "table"}
        assert client.psi(datasets, progress=False)["intersection"] == len(federation.parties["host"].data)
        # the training tables themselves: the active party's declares its label, so they can be scored
        metrics = client.evaluate("to-evaluate", datasets)
        assert set(metrics) == {"auc", "accuracy"} and np.isfinite(metrics["auc"])
        result = client.predict("to-evaluate", datasets)
        assert result["metrics"] == metrics
        predictions = pd.read_csv(io.BytesIO(read_job_file(result["predictions"])))   # sealed at rest
        assert len(predictions) == result["rows"] and predictions["prediction"].between(0, 1).all()
        trained = client.fit(datasets, task="binary", job_id="via-client", progress=False,
                             **{**SMALL_JOB, "train": {**SMALL_JOB["train"], "epochs": 1}})
        assert trained["job_id"] == "via-client" and "auc" in trained["test"]
    finally:
        client.close()
