"""Job events: progress, per-epoch metrics and the result, kept per job and streamed to watchers."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


@dataclass
class Event:
    job_id: str
    kind: str                 # log | progress | epoch | result | error | cancelled | suspended
    message: str = ""
    stage: str = ""
    progress: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    failed: bool = False
    time: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, default=str)


class EventLog:
    """Append-only event list with blocking iteration; a watcher sees every event from the start."""

    def __init__(self, job_id: str, sink: Callable[[Event], None] | None = None):
        self.job_id = job_id
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._sink = sink

    def emit(self, kind: str, message: str = "", **fields: Any) -> Event:
        event = Event(job_id=self.job_id, kind=kind, message=message, **fields)
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()
        if self._sink is not None:
            self._sink(event)
        return event

    @property
    def finished(self) -> bool:
        with self._cond:
            return bool(self._events) and self._events[-1].done

    def last(self) -> Event | None:
        with self._cond:
            return self._events[-1] if self._events else None

    def tail(self, count: int) -> list[Event]:
        """The last `count` events that are not progress updates."""
        with self._cond:
            return [e for e in self._events if e.kind != "progress"][-count:]

    def follow(self, cancelled: Callable[[], bool] = lambda: False, poll: float = 0.5) -> Iterator[Event]:
        index = 0
        while True:
            with self._cond:
                while index >= len(self._events):
                    if cancelled():
                        return
                    self._cond.wait(poll)
                batch = self._events[index:]
                index = len(self._events)
            for event in batch:
                yield event
                if event.done:
                    return
