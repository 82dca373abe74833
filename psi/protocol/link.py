"""Links: how a party exchanges messages with one peer.

A party owns one *inbox* (a ``queue.Queue``); each of its links puts ``(peer_name, item)`` there, where
``item`` is a message, or an exception (the peer failed / sent garbage), or :data:`EOF`. ``send`` never
blocks for long. The in-process link below connects two inboxes directly; ``psi.transport`` has the gRPC
ones. The protocol code only sees this interface.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

from psi.protocol.messages import Abort, Message

EOF = object()   # the peer closed its sending side


class Link:
    """One party's end of a connection to ``peer``."""

    peer: str

    def send(self, msg: Message) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish our sending side (after the last message)."""

    def abort(self, session_id: str, code: str, reason: str) -> None:
        """Tell the peer we give up (best effort), then close."""
        try:
            self.send(Abort(session_id, code, reason))
        except Exception:
            pass
        self.close()


class InProcessLink(Link):
    def __init__(self, me: str, peer: str, peer_inbox: queue.Queue):
        self.me = me
        self.peer = peer
        self._peer_inbox = peer_inbox
        self._closed = False
        self._lock = threading.Lock()

    def send(self, msg: Message) -> None:
        with self._lock:
            if not self._closed:
                self._peer_inbox.put((self.me, msg))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._peer_inbox.put((self.me, EOF))


def link_pair(a: str, a_inbox: queue.Queue, b: str, b_inbox: queue.Queue) -> tuple[InProcessLink, InProcessLink]:
    """Two connected in-process links: (a's link to b, b's link to a)."""
    return InProcessLink(a, b, b_inbox), InProcessLink(b, a, a_inbox)


class RecordingLink(Link):
    """Wraps a link and hands every message it sends to ``record`` first (tests audit what leaves a party)."""

    def __init__(self, inner: Link, record: Callable[[Message], None]):
        self.inner = inner
        self.peer = inner.peer
        self.record = record

    def send(self, msg: Message) -> None:
        self.record(msg)
        self.inner.send(msg)

    def close(self) -> None:
        self.inner.close()
