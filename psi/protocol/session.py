"""Entry points that run one party over links, and the in-process API that runs every party at once."""
from __future__ import annotations

import os
import queue
import threading
from typing import Callable, Mapping, Optional, Sequence

from psi.config import (MAX_CHUNK, MAX_PARTIES, MIN_CHUNK, Progress, PsiConfig, PsiResult, check_party_name,
                        check_session_id, new_session_id)
from psi.core.engine import Engine
from psi.errors import MalformedMessage, OutOfOrder, PeerError, PsiConfigError, SessionTimeout
from psi.protocol.ids import as_id_source
from psi.protocol.link import EOF, Link, RecordingLink, link_pair
from psi.protocol.messages import PROTOCOL_VERSION, Hello, Message, Mode
from psi.protocol.multi_party import MultiActive, MultiPassive, check_parties
from psi.protocol.two_party import MAX_SET_SIZE, TwoPartyRole

MAX_METADATA = 64


def make_hello(config: PsiConfig, me: str, passives: Sequence[str], size: int) -> Hello:
    return Hello(session_id=config.session_id or new_session_id(), salt=config.salt or os.urandom(32),
                 strip=config.strip, lowercase=config.lowercase, mode=config.mode,
                 parties=(me, *passives), recipient=passives[0], size=size, chunk_size=config.chunk_size,
                 metadata=dict(config.metadata), version=PROTOCOL_VERSION)


def check_hello(hello: Hello) -> Hello:
    """Validate a hello received from an active party (errors are MalformedMessage: the peer's fault)."""
    if hello.version != PROTOCOL_VERSION:
        raise MalformedMessage(f"hello uses protocol version {hello.version}; this party speaks {PROTOCOL_VERSION}")
    try:
        check_session_id(hello.session_id)
        for p in hello.parties:
            check_party_name(p)
    except PsiConfigError as exc:
        raise MalformedMessage(f"hello: {exc}") from None
    sid = hello.session_id
    if not 16 <= len(hello.salt) <= 255:
        raise MalformedMessage(f"session {sid}: hello salt is {len(hello.salt)} bytes; expected 16..255")
    if not MIN_CHUNK <= hello.chunk_size <= MAX_CHUNK:
        raise MalformedMessage(f"session {sid}: hello chunk size {hello.chunk_size} is outside [{MIN_CHUNK}, {MAX_CHUNK}]")
    if not isinstance(hello.mode, Mode):
        raise MalformedMessage(f"session {sid}: hello mode {hello.mode!r} is unknown")
    if not 2 <= len(hello.parties) <= MAX_PARTIES:
        raise MalformedMessage(f"session {sid}: hello names {len(hello.parties)} parties; expected 2..{MAX_PARTIES}")
    check_parties(hello.parties)
    if hello.recipient not in hello.parties[1:]:
        raise MalformedMessage(f"session {sid}: hello recipient {hello.recipient!r} is not one of the passive parties")
    if not 0 <= hello.size <= MAX_SET_SIZE:
        raise MalformedMessage(f"session {sid}: hello set size {hello.size} is out of range")
    if len(hello.metadata) > MAX_METADATA or any(len(k) > 256 or len(v) > 4096 for k, v in hello.metadata.items()):
        raise MalformedMessage(f"session {sid}: hello metadata is too large")
    return hello


def run_active(links: Mapping[str, Link], inbox: queue.Queue, ids, config: PsiConfig, *, me: str = "active",
               engine: Optional[Engine] = None, progress: Optional[Progress] = None) -> PsiResult:
    """Run the active (coordinating) party against the passives behind ``links`` (one: 2-party, more: N-party).

    Every link must deliver into ``inbox``. ``engine`` may be shared across sessions; if None, one is created
    with ``config.workers`` and closed afterwards.
    """
    if not links:
        raise PsiConfigError("the active party needs at least one passive peer")
    if len(links) + 1 > MAX_PARTIES:
        raise PsiConfigError(f"at most {MAX_PARTIES} parties are supported, got {len(links) + 1}")
    check_party_name(me)
    for name in links:
        check_party_name(name)
    if me in links:
        raise PsiConfigError(f"a passive peer has the active party's name {me!r}")
    source = as_id_source(ids)
    hello = make_hello(config, me, list(links), len(source))
    own_engine = engine is None
    engine = engine or Engine(config.resolved_workers())
    try:
        kw = dict(me=me, session_id=hello.session_id, links=dict(links), inbox=inbox, engine=engine,
                  progress=progress, timeout=config.timeout)
        if len(links) == 1:
            party = TwoPartyRole(hello=hello, active=True, ids=source, **kw)
        else:
            party = MultiActive(hello_template=hello, ids=source, **kw)
        return party.run()
    finally:
        if own_engine:
            engine.close()


def receive_hello(inbox: queue.Queue, timeout: float) -> tuple[str, Hello]:
    try:
        peer, item = inbox.get(timeout=timeout)
    except queue.Empty:
        raise SessionTimeout(f"no session hello within {timeout:g} s") from None
    if isinstance(item, BaseException):
        raise item
    if item is EOF:
        raise PeerError("the active party closed the connection before its hello", peer, "UNAVAILABLE")
    if not isinstance(item, Hello):
        raise OutOfOrder(f"the first message of a session must be a hello, got {type(item).__name__}")
    return peer, check_hello(item)


def run_passive(link: Link, inbox: queue.Queue, hello: Hello, ids, *, engine: Engine,
                progress: Optional[Progress] = None, timeout: float = 300.0) -> PsiResult:
    """Run a passive party for the session ``hello`` opened (the hello was already received and checked)."""
    source = as_id_source(ids)
    kw = dict(me=hello.recipient, session_id=hello.session_id, links={link.peer: link}, inbox=inbox, engine=engine,
              progress=progress, timeout=timeout)
    if len(hello.parties) == 2:
        party = TwoPartyRole(hello=hello, active=False, ids=source, **kw)
    else:
        party = MultiPassive(hello=hello, ids=source, **kw)
    return party.run()


def run_in_process(id_lists: Mapping[str, Sequence], active: str, config: Optional[PsiConfig] = None, *,
                   progress: Optional[Callable[[str, str, int, int], None]] = None,
                   record: Optional[Callable[[str, str, Message], None]] = None,
                   engine: Optional[Engine] = None) -> dict[str, PsiResult]:
    """Run every party of a PSI session in this process (threads + one shared compute engine).

    ``id_lists`` maps party name -> its IDs; ``active`` names the coordinating party; the others are the
    passives, in the order given. Returns each party's :class:`PsiResult`. ``record(party, peer, message)``
    sees every message a party sends (auditing); ``progress(party, stage, done, total)`` reports progress.
    """
    config = config or PsiConfig()
    if active not in id_lists:
        raise PsiConfigError(f"active party {active!r} is not among the parties {list(id_lists)}")
    passives = [p for p in id_lists if p != active]
    if not passives:
        raise PsiConfigError("PSI needs at least two parties")
    own_engine = engine is None
    engine = engine or Engine(config.resolved_workers())
    inboxes = {p: queue.Queue() for p in id_lists}
    active_links: dict[str, Link] = {}
    passive_links: dict[str, Link] = {}
    for p in passives:
        a_link, p_link = link_pair(active, inboxes[active], p, inboxes[p])
        if record is not None:
            a_link = RecordingLink(a_link, lambda m, peer=p: record(active, peer, m))
            p_link = RecordingLink(p_link, lambda m, me=p: record(me, active, m))
        active_links[p], passive_links[p] = a_link, p_link

    results: dict[str, PsiResult] = {}
    errors: dict[str, BaseException] = {}

    def reporter(name):
        return None if progress is None else (lambda stage, done, total: progress(name, stage, done, total))

    def passive_main(name: str) -> None:
        try:
            _, hello = receive_hello(inboxes[name], config.timeout)
            results[name] = run_passive(passive_links[name], inboxes[name], hello, id_lists[name], engine=engine,
                                        progress=reporter(name), timeout=config.timeout)
        except BaseException as exc:  # reported below
            errors[name] = exc
            passive_links[name].close()

    def active_main() -> None:
        try:
            results[active] = run_active(active_links, inboxes[active], id_lists[active], config, me=active,
                                         engine=engine, progress=reporter(active))
        except BaseException as exc:
            errors[active] = exc

    threads = [threading.Thread(target=passive_main, args=(p,), name=f"psi-{p}", daemon=True) for p in passives]
    threads.append(threading.Thread(target=active_main, name=f"psi-{active}", daemon=True))
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        if own_engine:
            engine.close()
    if errors:
        # The root cause is the error that is not just "a peer aborted".
        root = next((e for e in errors.values() if not isinstance(e, PeerError)), next(iter(errors.values())))
        raise root
    return {name: results[name] for name in id_lists}
