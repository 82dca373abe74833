"""The measured trade-off in every binary training job's privacy report (vfl/privacy/tradeoff.py): the bench's
recorded sweep, the job's own setting marked, as a table in privacy_report.md and as privacy_tradeoff.png."""
from __future__ import annotations

import json

from tests.job.conftest import job_spec, local_configs
from tests.job.local import run_local_job
from vfl.privacy import tradeoff
from vfl.privacy.defenses import defense_for_job

SWEEP = {"sweeps": [{"epochs": 2, "seeds": [1, 2, 3], "crypto": "plaintext", "measured": "2026-12-06", "summary": [
    {"table": "t", "setting": "none", "defense": "none", "params": {}, "median_drop": 0.0, "worst_leak": 1.0,
     "epsilon": None},
    {"table": "t", "setting": "dp noise_multiplier=2", "defense": "dp", "params": {"noise_multiplier": 2.0},
     "median_drop": 0.012, "worst_leak": 0.56, "epsilon": 7.1},
    {"table": "t", "setting": "marvell strength=4", "defense": "marvell", "params": {"strength": 4.0},
     "median_drop": 0.008, "worst_leak": 0.64, "epsilon": None}]}]}


def test_the_jobs_setting_is_marked(tmp_path):
    path = tmp_path / "measured.json"
    path.write_text(json.dumps(SWEEP))
    rows = tradeoff.tradeoff_for_report({"defense": "marvell", "strength": 4.0}, path)
    assert [r["this_job"] for r in rows] == [False, False, True]
    rows = tradeoff.tradeoff_for_report({"defense": "dp", "noise_multiplier": 1.0, "epsilon": 16.5}, path)
    assert not any(r["this_job"] for r in rows)          # a setting the bench did not measure is not claimed
    table = "\n".join(tradeoff.markdown_table(tradeoff.tradeoff_for_report({"defense": "none"}, path)))
    assert "| t | 2 | none **(this job)** | +0.0000 | 1.000 | none |" in table
    assert "| t | 2 | dp noise_multiplier=2 | +0.0120 | 0.560 | 7.1 |" in table
    png = tradeoff.write_plot(rows, tmp_path / "plot.png")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert tradeoff.write_plot([], tmp_path / "none.png") is None


def test_a_training_jobs_report_carries_the_recorded_tradeoff(tmp_path):
    """The committed measurements include the default defense, and the report marks it."""
    configs = local_configs(tmp_path)
    spec = job_spec("tradeoff-1", crypto={"mode": "plaintext"}, train={"epochs": 1, "batch_size": 128})
    run_local_job(spec, configs)
    job_dir = configs["guest"].job_dir("tradeoff-1")
    report = json.loads((job_dir / "privacy_report.json").read_text())
    assert report["tradeoff"] == tradeoff.tradeoff_for_report(report["defense"])
    marked = [r for r in report["tradeoff"] if r["this_job"]]
    assert marked and all(r["defense"] == defense_for_job(spec).name for r in marked)
    assert "(this job)" in (job_dir / "privacy_report.md").read_text()
    assert (job_dir / tradeoff.PLOT).read_bytes().startswith(b"\x89PNG")
