"""docs/psi.md's quick start runs as written, saved as a script and started the way a user starts one.

It needs its `if __name__ == "__main__":` guard (psi's worker processes are spawned and import the script); the
docs once left it out, and the example stopped with BrokenProcessPool. The second test shows that this test can
tell: the same code without the guard fails."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_start() -> str:
    text = (ROOT / "docs" / "psi.md").read_text()
    return re.search(r"## Using it\n\n```python\n(.*?)```", text, re.S).group(1)


def run_script(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    script = tmp_path / "quick_start.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_quick_start_runs_as_a_script(tmp_path):
    done = run_script(tmp_path, quick_start())
    assert done.returncode == 0, done.stderr[-2000:]
    ids, rows = done.stdout.splitlines()
    assert sorted(eval(ids)) == ["p-002", "p-003"]                     # noqa: S307 - our own script's print
    assert len(rows.strip("[]").split()) == 2


def test_without_its_guard_the_quick_start_fails(tmp_path):
    code = quick_start()
    head, body = code.split('if __name__ == "__main__":')
    unguarded = head + textwrap.dedent(body.split("\n", 1)[1])
    done = run_script(tmp_path, unguarded)
    assert done.returncode != 0 and "BrokenProcessPool" in done.stderr
