"""The states of a passive party's job. A call that the state does not allow is refused and changes nothing."""
from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    """opened -> aligned (PSI) -> ready (set up) -> prepared (its close, vfl/job/checkpoint.py) -> closed;
    a cardinality job: opened -> counted -> prepared -> closed. Any state -> closed when the job fails."""

    OPENED = "opened"
    ALIGNED = "aligned"
    COUNTED = "counted"
    READY = "ready"
    PREPARED = "prepared"
    CLOSED = "closed"

    def __str__(self) -> str:  # messages read "job 'x' is opened", as they did when states were strings
        return self.value
