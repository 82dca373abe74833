"""A PSI-only job (psi or cardinality) never reads the label, so a label that does not fit the spec's task (here
three classes under the default binary task) must not fail it; training with that task still refuses it."""
from __future__ import annotations

import pandas as pd
import pytest

from vfl.api import Federation, JobError, Party


def test_psi_only_jobs_ignore_the_label(tmp_path):
    ids = [f"k{i:03d}" for i in range(60)]
    active = pd.DataFrame({"id": ids, "x": range(60), "outcome": ["low", "mid", "high"] * 20})
    passive = pd.DataFrame({"id": ids[10:], "z": range(50)})
    with Federation([Party("a", active, label="outcome"), Party("b", passive)], workdir=tmp_path,
                    secure_transport=False) as fed:
        assert fed.psi(progress=False)["intersection"] == 50
        assert fed.cardinality(progress=False)["intersection"] == 50
        with pytest.raises(JobError, match="a binary task needs exactly 2 label values, found 3"):
            fed.fit(task="binary", progress=False, crypto={"mode": "plaintext"})
