"""The data audit at job open: every party audits its own dataset, saves the report for itself, and refuses
feature columns that look like personal data unless its node policy allows them by name."""
from __future__ import annotations

import dataclasses
import json

import pytest

from tests.governance.corpus import positives
from tests.job.conftest import job_spec, local_configs
from tests.job.local import run_local_job
from vfl.errors import DataError, PeerCallError


def add_column(config, name: str, values: list[str]) -> None:
    """Add a column to the party's table (the dataset uses every column but the id and label as features)."""
    import pandas as pd
    path = config.dataset("table").path
    frame = pd.read_csv(path, dtype=str)
    frame[name] = [values[i % len(values)] for i in range(len(frame))]
    frame.to_csv(path, index=False)


def categorical(config, column: str):
    table = config.dataset("table")
    datasets = {**config.datasets, "table": dataclasses.replace(table, categorical=(*table.categorical, column))}
    return dataclasses.replace(config, datasets=datasets)


def allow(config, *columns: str):
    return dataclasses.replace(config, policy=dataclasses.replace(config.policy, allow_pii_columns=frozenset(columns)))


def psi_only(job_id: str):
    return job_spec(job_id, kind="psi")


def test_active_party_refuses_its_own_pii_column_naming_it_and_the_detector(tmp_path):
    configs = local_configs(tmp_path)
    add_column(configs["guest"], "contact", positives()["email"])
    with pytest.raises(DataError, match=r"column 'contact' looks like e-mail addresses \(email, by 100% of sampled"):
        run_local_job(job_spec("pii-a", train__epochs=1), configs)
    report = json.loads((configs["guest"].job_dir("pii-a") / "audit.json").read_text())
    contact = next(c for c in report["columns"] if c["name"] == "contact")
    assert contact["findings"][0]["detector"] == "email"


def test_passive_party_refuses_its_pii_column_and_the_active_party_learns_no_column_name(tmp_path, caplog):
    configs = local_configs(tmp_path)
    add_column(configs["host"], "holder_ssn", positives()["national_id"])
    with pytest.raises(PeerCallError) as info:
        run_local_job(job_spec("pii-p", train__epochs=1), configs)
    assert "holder_ssn" not in str(info.value) and "error id" in str(info.value)
    assert "holder_ssn" in caplog.text and "national identity numbers" in caplog.text   # the passive's own log
    assert (configs["host"].job_dir("pii-p") / "audit.json").exists()
    assert not (configs["guest"].job_dir("pii-p") / "audit.json").read_text().count("holder_ssn")


def test_policy_allows_a_flagged_column_by_name_and_psi_only_jobs_do_not_refuse(tmp_path):
    configs = local_configs(tmp_path)
    add_column(configs["host"], "mobile", positives()["phone"])
    configs["host"] = categorical(configs["host"], "mobile")
    assert run_local_job(psi_only("pii-psi"), configs)["intersection"] == 569 - 30
    configs["host"] = allow(configs["host"], "mobile")
    result = run_local_job(job_spec("pii-ok", train__epochs=1), configs)
    assert result["test"]["auc"] > 0.5
    report = json.loads((configs["host"].job_dir("pii-ok") / "audit.json").read_text())
    assert [f["detector"] for c in report["columns"] if c["name"] == "mobile" for f in c["findings"]] == ["phone"]


def test_a_job_never_reads_a_party_table_whole_and_parses_every_column_at_most_twice(tmp_path, monkeypatch):
    """Before (gov2): the audit at job open read the whole table, then the job read it again (since then it read it
    once, whole, for both). Since the table is streamed (issue 12, item 3) no step holds it whole: `read_frame` is
    never called; the audit and the job's copy read it in chunks, and only two passes parse every column (the
    audit's sample and the build of the job's `table/`), the others one column (the audit's row count, a training
    schema's label classes)."""
    import vfl.data
    import vfl.data.readers as readers
    import vfl.data.streamed as streamed
    import vfl.data.table as table
    configs = local_configs(tmp_path)
    whole: list[str] = []
    passes: list[tuple[str, int | None]] = []
    original_whole, original_chunks = readers.read_frame, readers.iter_frames

    def counting_whole(path):
        whole.append(str(path))
        return original_whole(path)

    def counting_chunks(path, chunk_rows=None, columns=None):
        passes.append((str(path), None if columns is None else len(columns)))
        return original_chunks(path, chunk_rows, columns)
    for module in (readers, table, vfl.data):
        monkeypatch.setattr(module, "read_frame", counting_whole)
    monkeypatch.setattr(readers, "iter_frames", counting_chunks)
    monkeypatch.setattr(streamed, "iter_frames", counting_chunks)
    run_local_job(job_spec("read-once", train__epochs=1), configs)
    assert whole == []
    for party in ("guest", "host"):
        path = str(configs[party].dataset("table").path)
        mine = [columns for p, columns in passes if p == path]
        assert mine.count(None) == 2 and all(c == 1 for c in mine if c is not None), (party, mine)


def test_above_the_row_bound_the_column_audit_samples_evenly_and_k_covers_every_row():
    import pandas as pd

    from vfl.data.dataset import DatasetConfig
    from vfl.governance.audit import audit_frame
    rows = 996                          # an even sample of 200 is then every 5th row, exactly
    frame = pd.DataFrame({"id": [str(i) for i in range(rows)],
                          "age": [str(30 + i % 7) for i in range(rows)],
                          "note": ["" if i % 2 == 0 else "x" for i in range(rows)],
                          "email": [f"person{i}@example.org" for i in range(rows)]})
    frame.loc[rows - 1, "age"] = "99"   # one row alone in its group: k = 1 only if every row is counted
    ds = DatasetConfig(name="t", path=None, id_column="id", label=None, features=None, categorical=(),
                       id_format=None, missing={})
    full, sampled = audit_frame(frame, ds), audit_frame(frame, ds, max_rows=200)
    assert full.column_sample_rows is None and sampled.column_sample_rows == 200
    assert sampled.rows == full.rows == rows
    assert sampled.quasi_identifiers == full.quasi_identifiers and full.quasi_identifiers.smallest_group == 1
    assert {c.name: c for c in full.columns}["note"].missing == rows // 2
    assert {c.name: c for c in sampled.columns}["note"].missing == 100      # rows 0, 10, 20, ... of 0, 5, 10, ...
    assert [f.detector for c in sampled.columns for f in c.findings] == ["email"]
    assert "even sample of 200 rows" in sampled.to_text()
