"""Process-tree helpers shared by the tests and the benchmarks (Linux /proc): a node's worker pool, Ray's workers."""
from __future__ import annotations

from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, read from /proc/<pid>/task/*/children (children, then theirs)."""
    out, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue  # the task or the process just exited
            out += children
            stack += children
    return out


def status_kb(pid: int, key: str) -> int:
    """A memory figure of /proc/<pid>/status in kB (VmRSS, VmHWM, ...); 0 if the process does not report it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    """Reset the process's peak resident memory (VmHWM) to its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class NodesThrough:
    """Stands in for `subprocess` inside vfl.api, so that `python -m vfl.cli.main ...` (a Federation's node) runs
    through ``launcher`` instead: a script that wraps the node (a wire tap, a fault injector, a key spy)."""

    def __init__(self, launcher):
        self.launcher = str(launcher)

    def __getattr__(self, name):
        import subprocess
        return getattr(subprocess, name)

    def Popen(self, args, **kwargs):
        import subprocess
        args = list(args)
        if args[1:3] == ["-m", "vfl.cli.main"]:
            args[1:3] = [self.launcher]
        return subprocess.Popen(args, **kwargs)
