"""A node that stops when the process that started it is gone.

`vfl.api.Federation` starts its nodes with VFL_EXIT_WITH_PARENT=<its pid>; `vfl serve` then watches that process,
so a notebook kernel or script that dies without closing its federation leaves no node processes behind.
"""
from __future__ import annotations

import os
import sys
import threading

#: the environment variable Federation sets for its nodes: the pid whose end stops the node
PARENT_PID_ENV = "VFL_EXIT_WITH_PARENT"


def exit_with_parent(node, interval: float = 0.5, grace: float = 5.0) -> None:
    """With VFL_EXIT_WITH_PARENT=<pid>, stop `node` once that process is gone (reparenting changes getppid()).

    A watchdog thread rather than prctl(PR_SET_PDEATHSIG): the signal would fire when the *thread* that started us
    exits, which in a notebook or a thread pool is long before its process does.
    """
    value = os.environ.get(PARENT_PID_ENV)
    if not value:
        return
    try:
        parent = int(value)
    except ValueError:
        print(f"vfl serve: ignoring {PARENT_PID_ENV}={value!r} (not a process id)", file=sys.stderr, flush=True)
        return

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(interval)
        print(f"vfl serve: parent process {parent} is gone; stopping", file=sys.stderr, flush=True)
        deadline = threading.Timer(grace, lambda: os._exit(1))  # a stop that hangs must not outlive the parent
        deadline.daemon = True
        deadline.start()
        node.stop()

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
