"""The active side: run a PSI session against passive parties reachable through ready ``grpc.Channel``s.

    result = run_session({"bank-b": channel_b}, ids, PsiConfig(...))                 # 2-party
    result = run_session({"b": channel_b, "c": channel_c}, ids, config, me="a")      # N-party

Channel security (mutual TLS, the expected server identity) is the caller's concern; the CLI and the node
build the channels.
"""
from __future__ import annotations

import queue
from typing import Mapping, Optional, Sequence

import grpc

from psi.config import Progress, PsiConfig, PsiResult
from psi.core.engine import Engine
from psi.protocol.session import run_active
from psi.transport.links import ClientLink


def run_session(channels: Mapping[str, grpc.Channel], ids, config: Optional[PsiConfig] = None, *,
                me: str = "active", engine: Optional[Engine] = None, progress: Optional[Progress] = None,
                call_metadata: Optional[Sequence[tuple[str, str]]] = None, resume_seconds: float = 0.0) -> PsiResult:
    """Run the active party's side; ``channels`` maps each passive party's name to its channel.

    ``resume_seconds`` > 0: a stream that breaks mid-session is reattached for up to that long (the passive
    party's server must allow it too; psi/transport/links.py)."""
    config = config or PsiConfig()
    inbox: queue.Queue = queue.Queue()
    links: dict[str, ClientLink] = {}
    try:
        for name, channel in channels.items():
            links[name] = ClientLink(channel, name, inbox, list(call_metadata) if call_metadata else None,
                                     resume_seconds=resume_seconds)
        return run_active(links, inbox, ids, config, me=me, engine=engine, progress=progress)
    finally:
        for link in links.values():
            link.shutdown(timeout=10.0)
