"""Prometheus metrics of real nodes: job states, RPC latency and errors, bytes per peer, crypto time, epsilon."""
from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.node.conftest import breast_parties

SMALL = {"model": {"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [4]}},
         "train": {"epochs": 1, "batch_size": 256}, "crypto": {"key_bits": 1024},
         "privacy": {"defense": "dp"}}   # the DP defense, which has an epsilon (the default, marvell, has none)


def scrape(port: int) -> list:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    from vfl.api import Federation
    with Federation(breast_parties(), workdir=tmp_path_factory.mktemp("metrics"), metrics=True) as fed:
        fed.fit(job_id="metered-1", progress=False, **SMALL)
        yield fed


def test_job_states_crypto_time_and_epsilon(fed):
    guest, host = (scrape(fed.metrics_ports[p]) for p in ("guest", "host"))
    assert value(guest, "vfl_jobs", role="active", state="succeeded") == 1
    assert value(guest, "vfl_jobs", role="active", state="running") == 0
    assert value(guest, "vfl_crypto_seconds_total", role="active", operation="decrypt") > 0
    assert value(guest, "vfl_crypto_seconds_total", role="active", operation="encrypt") > 0
    for samples in (guest, host):   # both parties' privacy reports declare the job's DP epsilon
        assert value(samples, "vfl_epsilon", job_id="metered-1") > 0


def test_rpc_latency_and_bytes_per_peer(fed):
    guest, host = (scrape(fed.metrics_ports[p]) for p in ("guest", "host"))
    assert value(host, "vfl_rpc_seconds_count", service="Party", method="Forward") >= 2
    assert value(host, "vfl_rpc_seconds_count", service="Psi", method="Session") == 1
    assert value(guest, "vfl_rpc_seconds_count", service="Control", method="SubmitJob") == 1
    received = value(host, "vfl_bytes_total", peer="guest", direction="received", service="Party")
    sent = value(guest, "vfl_bytes_total", peer="host", direction="sent", service="Party")
    assert received > 10_000 and abs(received - sent) / received < 0.05, (received, sent)


def test_a_refused_job_is_an_rpc_error_and_the_node_keeps_serving(fed):
    from vfl.api import JobError
    before = value(scrape(fed.metrics_ports["guest"]), "vfl_rpc_errors_total", service="Control",
                   method="SubmitJob")
    with pytest.raises(JobError, match="already ran"):
        fed.fit(job_id="metered-1", progress=False, **SMALL)      # a job id that already ran here
    after = scrape(fed.metrics_ports["guest"])
    assert value(after, "vfl_rpc_errors_total", service="Control", method="SubmitJob") == before + 1
    assert value(after, "vfl_jobs", role="active", state="succeeded") == 1
