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
