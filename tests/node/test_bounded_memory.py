"""A node holds no whole table (issue 12, item 3): the peak memory of a node process during a PSI job, a prediction
job and a training job stays under a bound that the table itself exceeds.

Each party's table has 60,000 rows and 160 numeric columns (about 70 MB of CSV). Read whole, as a node did before
(pandas reads every cell as text, then the features, the IDs, PSI's arrays, the aligned copy), it cost a node process
more than the bound: measured on 2026-12-06 with the code before the change, a peak growth of +341 MB (active) and
+324 MB (passive) for the PSI job and +234 / +325 MB for the prediction, so this test failed (run again with the
training job added, on the commit before the streaming merge: PSI +320 / +314, prediction +391 / +334, training
+374 / +314 MB; after it, training grows a node by +15 / +6 MB). Read in chunks into the
job's folder, PSI and the alignment spilling to disk: +77 / +88 MB and +26 / +28 MB (the chunks, the data audit's
sample, the spill buffers), and it does not grow with the rows (benchmarks/stream_memory_bench.py).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.procs import descendants, reset_peak, status_kb

ROWS = 60_000
COLUMNS = 160
#: growth of a node process's peak resident memory allowed during one job (MB)
BOUND_MB = 150


def wide_tables(directory: Path, rows: int, seed: int) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    ids = np.char.mod("%016x", rng.choice(1 << 62, size=rows, replace=False))
    paths = {}
    for party in ("active", "passive"):
        frame = pd.DataFrame(rng.normal(size=(rows, COLUMNS)).round(3),
                             columns=[f"{party[0]}{k}" for k in range(COLUMNS)])
        frame.insert(0, "id", ids[rng.permutation(rows)])
        if party == "active":
            frame["y"] = (frame.iloc[:, 1] > 0).astype(int)
        paths[party] = directory / f"{party}-{rows}.csv"
        frame.to_csv(paths[party], index=False)
    return paths


def peak_growth_mb(fed, run) -> dict[str, float]:
    """Run `run()`; each node process's peak resident memory minus its resident memory just before."""
    before = {}
    for name, proc in fed.processes.items():
        reset_peak(proc.pid)
        before[name] = status_kb(proc.pid, "VmRSS")
    run()
    return {name: (status_kb(proc.pid, "VmHWM") - before[name]) / 1024 for name, proc in fed.processes.items()}


@pytest.mark.slow
def test_psi_prediction_and_training_of_a_wide_table_stay_within_a_bound(tmp_path):
    from vfl.api import Federation, Party
    small = wide_tables(tmp_path / "small", 2_000, seed=1)
    big = wide_tables(tmp_path / "big", ROWS, seed=2)
    parties = [Party("active", str(small["active"]), label="y"), Party("passive", str(small["passive"]))]
    with Federation(parties, workdir=tmp_path / "fed", workers=1) as fed:
        model = fed.fit(job_id="model", progress=False, crypto={"mode": "plaintext"}, train={"epochs": 1},
                        model={"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [4]}})
        for party in ("active", "passive"):
            config = yaml.safe_load(fed.configs[party].read_text())
            config["datasets"]["big"] = {"path": str(big[party]), "id": "id"}
            config["datasets"]["big-train"] = {"path": str(big[party]), "id": "id",
                                               **({"label": "y"} if party == "active" else {})}
            fed.configs[party].write_text(yaml.safe_dump(config, sort_keys=False))
        parties_of = {"active": "big", "passive": "big"}
        psi, predicted, trained = {}, {}, {}
        grew = {"psi": peak_growth_mb(fed, lambda: psi.update(fed._client.psi(parties_of, "active", job_id="big-psi",
                                                                            progress=False))),
                "predict": peak_growth_mb(fed, lambda: predicted.update(fed._client.predict(
                    model.job_id, parties_of, "active", "big-predict", progress=False))),
                # training keeps the aligned IDs, labels and split in memory and reads each batch's rows from disk
                "train": peak_growth_mb(fed, lambda: trained.update(fed._client.fit(
                    {"active": "big-train", "passive": "big-train"}, active="active", job_id="big-train",
                    progress=False, crypto={"mode": "plaintext"}, train={"epochs": 1},
                    model={"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [4]}})))}
        workers = {name: [status_kb(pid, "VmHWM") / 1024 for pid in descendants(proc.pid)]
                   for name, proc in fed.processes.items()}
        from vfl.api import read_job_file   # the predictions are sealed at rest, under the active node's key
        predictions = pd.read_csv(io.BytesIO(read_job_file(predicted["predictions"], fed.configs["active"])))
    print("peak growth of the node processes (MB):", grew, "worker peaks (MB):", workers)
    assert psi["intersection"] == ROWS
    assert predicted["rows"] == ROWS and len(predictions) == ROWS
    assert trained["split"]["train"] > ROWS // 2 and trained["test"]["auc"] > 0.9   # the label is column 1's sign
    for job, by_party in grew.items():
        assert max(by_party.values()) < BOUND_MB, f"{job}: a node's peak memory grew by {by_party} MB"
    assert all(peak < 400 for peaks in workers.values() for peak in peaks), workers  # PSI's workers: chunks too
