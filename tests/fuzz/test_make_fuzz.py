"""`make fuzz` runs: narrowed to one hypothesis file at the short profile and two atheris targets for a second.

The long run itself (30,000 examples per hypothesis target, a minute per atheris target) is too long for `make
test`; this checks that the target's commands work, so a broken `make fuzz` shows here first.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(subprocess.run(["which", "make"], capture_output=True).returncode != 0, reason="no make")
def test_make_fuzz_runs_hypothesis_then_atheris():
    proc = subprocess.run(["make", "-C", str(REPO), "fuzz", f"PY={sys.executable}", "STAMP=", "FUZZ_PROFILE=ci",
                           "FUZZ_TESTS=tests/fuzz/test_found.py", "FUZZ_TARGETS=spec points", "FUZZ_SECONDS=1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
    if importlib.util.find_spec("atheris") is None:
        assert "atheris is not installed" in proc.stdout
    else:
        assert "== atheris: spec (1 s)" in proc.stdout and "== atheris: points (1 s)" in proc.stdout
        assert proc.stderr.count("Done ") == 2, proc.stderr[-2000:]   # libFuzzer's summary line of each run
