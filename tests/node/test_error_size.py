"""Error messages stay small whatever a table holds (issue 15, item 9, first part).

Before: a 30 MB cell in a party's table became a 30 MB error: a 30 MB line in the node's log, a job event over the
16 MiB stream limit (the submitter saw "payload exceeds the 16 MiB limit" instead of the reason) and a status detail
over gRPC's metadata limit. Now every error quotes a value cut to 80 characters, a VflError or PsiError message is
cut to a few thousand characters, and a status detail is cut to fit the trailing metadata.
"""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from psi.error_ids import MAX_DETAIL_BYTES, fit_status_detail
from psi.errors import DuplicateIdError
from tests.node.conftest import breast_parties
from vfl.errors import MAX_MESSAGE_CHARS, DataError

CELL = 30_000_000


def percent_encoded_size(text: str) -> int:
    return sum(1 if " " <= ch <= "~" and ch != "%" else 3 * len(ch.encode("utf-8")) for ch in text)


def test_error_messages_are_cut():
    assert len(str(DataError("x" * CELL))) < MAX_MESSAGE_CHARS + 50
    assert len(str(DuplicateIdError("y" * CELL))) < 2100


@pytest.mark.parametrize("text", ["a" * 100_000, "é" * 100_000, "表" * 100_000, "%" * 100_000])
def test_status_details_fit_the_trailing_metadata(text):
    detail = fit_status_detail(text)
    assert percent_encoded_size(detail) <= MAX_DETAIL_BYTES and detail.endswith("more characters]")
    assert fit_status_detail("short") == "short"


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """Nodes whose configs also name a copy of each party's table with a 30 MB cell in a feature column."""
    from vfl.api import Federation
    workdir = tmp_path_factory.mktemp("error-size")
    with Federation(breast_parties(), workdir=workdir) as fed:
        for name, party in fed.parties.items():
            table: pd.DataFrame = party.data.copy()
            feature = [c for c in table.columns if c not in ("id", "y")][0]
            table[feature] = table[feature].astype(object)
            table.loc[table.index[3], feature] = "Z" * CELL
            path = workdir / name / "data" / "big-cell.csv"
            table.to_csv(path, index=False)
            config = yaml.safe_load(fed.configs[name].read_text())
            config["datasets"]["big-cell"] = {**config["datasets"]["table"], "path": str(path)}
            fed.configs[name].write_text(yaml.safe_dump(config, sort_keys=False))
        yield fed


def run_with(fed, datasets: dict[str, str], job_id: str) -> str:
    from vfl.api import JobError, job_spec
    # a training job: it reads the features when it opens (a PSI-only job reads the IDs alone and never sees the cell)
    with pytest.raises(JobError) as info:
        fed.run(job_spec("train", datasets, "guest", job_id, task="binary"), progress=False)
    return str(info.value)


def longest_log_line(fed, party: str) -> int:
    return max(len(line) for line in (fed.workdir / f"{party}.log").read_text().splitlines())


def test_a_huge_cell_at_the_active_party(federation):
    message = run_with(federation, {"guest": "big-cell", "host": "table"}, "big-cell-active")
    assert "is not numeric" in message and "more characters]" in message and len(message) < 1000, message[:300]
    assert longest_log_line(federation, "guest") < 10_000


def test_a_huge_cell_at_a_passive_party(federation):
    """The passive party's own data error reaches the active party as an error id; its log line stays short."""
    message = run_with(federation, {"guest": "table", "host": "big-cell"}, "big-cell-passive")
    assert "error id" in message and len(message) < 1000, message[:300]
    assert longest_log_line(federation, "host") < 10_000
    assert "is not numeric" in (federation.workdir / "host.log").read_text()
