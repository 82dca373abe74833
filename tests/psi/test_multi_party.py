"""N-party PSI (OPRF + OKVS + zero-sharing): correctness, and tests that catch partial-intersection leaks.

The leak tests look at what each party *receives* (the messages its peers send it, recorded in-process):

* transcript shape: two sessions with the same set sizes and |I| but very different partial overlaps must
  look the same to every party: per sender and message kind, the same sequence of (item count, bytes),
  and the same number of repeated 16-byte values among everything received;
* no cross-list equalities: nothing the active party receives from one passive equals anything it
  receives from another, even when all sets are identical;
* zero-sharing: the active party's decoded shares of an ID XOR to zero only over all passives.

The first two fail on the previous N-party design (A saw every passive's list under one shared key t, and
the comparer P1 saw all lists under the key st).
"""
from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from psi import PsiConfig, run_in_process
from psi.core import okvs
from psi.core.hashing import Canonicalization
from psi.core.oprf import okvs_seed
from psi.protocol import multi_party
from psi.protocol.messages import Chunk, Count, Done, Hello, HelloReply, Roster, Sealed, Table
from psi.transport import run_session

from .conftest import random_ids
from .test_in_process import check


def cfg(**kw):
    kw.setdefault("workers", 0)
    kw.setdefault("chunk_size", 64)
    kw.setdefault("timeout", 60)
    return PsiConfig(**kw)


# ----------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("parties", [3, 4, 5])
def test_random_sets_equal_the_plain_intersection(engine, parties):
    rng = random.Random(100 + parties)
    universe = random_ids(1500, 100 + parties)
    core = universe[:rng.randint(20, 80)]
    lists = {}
    for i in range(parties):
        extra = rng.sample(universe[80:], rng.randint(50, 400))
        ids = list(dict.fromkeys(core + extra))
        rng.shuffle(ids)
        lists[f"p{i}"] = ids
    res = run_in_process(lists, "p0", cfg(), engine=engine)
    common = check(res, lists)
    assert set(core) <= set(common)
    if len(common) > 20:
        assert common != sorted(common)        # the agreed order is pseudorandom, not the ID order


def test_empty_intersection_identical_sets_and_an_empty_passive(engine):
    u = random_ids(600, 110)
    lists = {"a": u[:300], "b": u[100:400], "c": u[300:600]}       # pairwise overlaps, nothing common
    res = run_in_process(lists, "a", cfg(), engine=engine)
    assert all(r.size == 0 and r.ids == [] and len(r.rows) == 0 for r in res.values())
    same = {"a": u[:200], "b": list(reversed(u[:200])), "c": u[100:200] + u[:100], "d": sorted(u[:200])}
    res = run_in_process(same, "a", cfg(), engine=engine)
    assert len(check(res, same)) == 200
    empty = {"a": u[:200], "b": u[:300], "c": []}
    res = run_in_process(empty, "a", cfg(), engine=engine)
    assert all(r.size == 0 for r in res.values()) and res["c"].set_sizes == {"a": 200, "b": 300, "c": 0}
    res = run_in_process({"a": [], "b": u[:10], "c": u[:20]}, "a", cfg(), engine=engine)
    assert all(r.size == 0 for r in res.values())


def test_unicode_long_ids_and_canonicalization(engine):
    base = ["José-Ñúñez-0001-ü", "東京都-顧客-ⅠⅡⅢ-0002", "🙂🙃-emoji-id-0003", "a" * 50_000, "Ελληνικά-0004-ωμέγα"]
    a = base + random_ids(40, 111)
    b = list(reversed(base)) + ["a" * 49_999] + random_ids(40, 112)
    c = [" " + x.upper() + " " for x in base[:3]] + base[3:] + random_ids(40, 113)
    canon = Canonicalization(strip=True, lowercase=True)
    lists = {"a": a, "b": b, "c": c}
    res = run_in_process(lists, "a", cfg(lowercase=True), engine=engine)
    assert set(check(res, lists, canon)) == {canon.apply(x) for x in base}


@pytest.mark.parametrize("parties", [3, 4])
def test_cardinality_mode_gives_only_the_count(engine, parties):
    u = random_ids(800, 114)
    lists = {f"p{i}": u[10 * i:10 * i + 500] for i in range(parties)}
    expected = len(set.intersection(*map(set, lists.values())))
    res = run_in_process(lists, "p0", cfg(mode="cardinality"), engine=engine)
    assert {r.size for r in res.values()} == {expected}
    assert all(r.ids is None and r.rows is None for r in res.values())
    empty = dict(lists, p1=[])
    res = run_in_process(empty, "p0", cfg(mode="cardinality"), engine=engine)
    assert {r.size for r in res.values()} == {0}


def test_four_parties_over_grpc_both_modes(psi_server, engine):
    u = random_ids(1000, 115)
    a, passives = u[:600], {"b": u[100:700], "c": u[150:800], "d": u[:300] + u[700:]}
    expected = set(a) & set(passives["b"]) & set(passives["c"]) & set(passives["d"])
    srv = psi_server(passives)
    channels = {name: srv.channel() for name in passives}
    res = run_session(channels, a, cfg(), me="a", engine=engine)
    assert set(res.ids) == expected and [a[i] for i in res.rows] == res.ids
    for name, ids in passives.items():
        theirs = srv.servicer.wait_result(res.session_id, 10, party=name)
        assert theirs.ids == res.ids and [ids[i] for i in theirs.rows] == res.ids
    card = run_session({name: srv.channel() for name in passives}, a, cfg(mode="cardinality"), me="a",
                       engine=engine)
    assert card.size == len(expected) and card.ids is None
    assert srv.servicer.wait_result(card.session_id, 10, party="b").size == len(expected)


# ----------------------------------------------------------------------------- what each party receives
def record_session(lists: dict, mode: str, engine) -> dict[str, list[tuple[str, object]]]:
    """Run a session; return, per party, the (sender, message) pairs it received, in sending order."""
    received: dict[str, list] = defaultdict(list)

    def record(party, peer, msg):
        received[peer].append((party, msg))

    config = cfg(mode=mode, session_id="shape-session-0001", salt=b"s" * 32)
    run_in_process(lists, "a", config, engine=engine, record=record)
    return received


def items(msg) -> list[bytes]:
    """The bulk items a message carries (chunk data split by its width), else nothing."""
    if isinstance(msg, Chunk) and msg.count:
        width = len(msg.data) // msg.count
        return [msg.data[i:i + width] for i in range(0, len(msg.data), width)]
    return []


def shape(msg) -> tuple:
    """What a message shows besides its pseudorandom content: kind, stage, item count, byte length."""
    if isinstance(msg, Chunk):
        return ("Chunk", int(msg.stage), msg.count, len(msg.data))
    if isinstance(msg, Sealed):
        return ("Sealed", int(msg.stage), msg.count, len(msg.ciphertext))
    if isinstance(msg, Table):
        # The OKVS attempt number is part of the shape: it is 0 except with probability < 2^-40 per table.
        return ("Table", None, msg.cells, msg.attempt)
    if isinstance(msg, (Count, Done)):
        return (type(msg).__name__, None, msg.count, len(msg.digest) if isinstance(msg, Done) else 0)
    if isinstance(msg, (Hello, HelloReply)):
        return (type(msg).__name__, None, msg.size, 0)
    if isinstance(msg, Roster):
        return ("Roster", None, tuple(sorted(msg.sizes.items())), len(msg.keys))
    return (type(msg).__name__, None, None, None)


def view_signature(received: list[tuple[str, object]]) -> dict:
    """Per sender and message kind, the ordered shapes; plus how many received 16-byte values repeat."""
    per_kind: dict[tuple, list] = defaultdict(list)
    prefixes = []
    for sender, msg in received:
        s = shape(msg)
        per_kind[(sender, s[0], s[1])].append(s[2:])
        prefixes += [item[:16] for item in items(msg)]
    per_kind["repeated 16-byte values"] = [len(prefixes) - len(set(prefixes))]
    return dict(per_kind)


def overlap_sessions() -> tuple[dict, dict]:
    """Two sessions: same sizes (300 each) and |I| = 60, but large vs. minimal partial overlaps."""
    u = random_ids(3000, 120)
    common = u[:60]
    overlapping = {"a": common + u[60:300],
                   "p1": common + u[60:240] + u[1000:1060],          # |X ∩ Y1| = 240
                   "p2": common + u[1000:1060] + u[2000:2180]}       # |Y1 ∩ Y2| = 120
    minimal = {"a": common + u[300:540], "p1": common + u[600:840], "p2": common + u[900:1140]}
    return overlapping, minimal


@pytest.mark.parametrize("mode", ["intersection", "cardinality"])
def test_transcript_shape_does_not_depend_on_partial_overlaps(engine, mode):
    overlapping, minimal = overlap_sessions()
    for lists in (overlapping, minimal):
        assert [len(v) for v in lists.values()] == [300, 300, 300]
        assert len(set(lists["a"]) & set(lists["p1"]) & set(lists["p2"])) == 60
    first = record_session(overlapping, mode, engine)
    second = record_session(minimal, mode, engine)
    assert set(first) == set(second) == {"a", "p1", "p2"}
    for party in first:
        sig1, sig2 = view_signature(first[party]), view_signature(second[party])
        assert sig1 == sig2, (party, {k: (sig1.get(k), sig2.get(k)) for k in sig1.keys() | sig2.keys()
                                      if sig1.get(k) != sig2.get(k)})


@pytest.mark.parametrize("mode", ["intersection", "cardinality"])
def test_active_party_sees_no_value_from_two_passives(engine, mode):
    """Even with identical sets everywhere, no 16-byte value (REPLY, OKVS cell, ...) that A receives from
    one passive equals one it receives from another."""
    u = random_ids(400, 121)
    lists = {"a": u, "p1": list(reversed(u)), "p2": u[200:] + u[:200], "p3": sorted(u)}
    received = record_session(lists, mode, engine)["a"]
    by_sender: dict[str, set] = defaultdict(set)
    for sender, msg in received:
        for item in items(msg):
            by_sender[sender].add(item[:16])
    assert set(by_sender) == {"p1", "p2", "p3"} and all(len(v) >= 400 for v in by_sender.values())
    names = sorted(by_sender)
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            assert not by_sender[p] & by_sender[q], (p, q)


def test_passives_receive_no_repeated_values(engine):
    """A passive receives A's blinded list and (for common IDs only) its own tags: nothing repeats."""
    overlapping, _ = overlap_sessions()
    received = record_session(overlapping, "intersection", engine)
    for party in ("p1", "p2"):
        assert view_signature(received[party])["repeated 16-byte values"] == [0]


# ----------------------------------------------------------------------------- zero-sharing at A
def capture_decoded(monkeypatch) -> dict:
    """Record A's o_j(x) = Decode(T_j, tag_j(x)) XOR mask_j(x) for every passive j, and A's send order."""
    captured: dict = {}
    original = multi_party.MultiActive._maybe_decode

    def spy(self):
        ready = not self.decoded and self.own.done and all(
            self.fin_done[p] == self.n_own and self._okvs_complete(p) for p in self.passives)
        if ready:
            for p in self.passives:
                seed = okvs_seed(self.session_id, p, self.tables[p].attempt)
                captured[p] = okvs.decode(self.cells[p], self.fin[p][:, :16], seed) ^ self.fin[p][:, 16:]
            captured["order"] = self.order.copy()
        original(self)

    monkeypatch.setattr(multi_party.MultiActive, "_maybe_decode", spy)
    return captured


@pytest.mark.parametrize("mode", ["intersection", "cardinality"])
def test_shares_xor_to_zero_only_over_all_passives(engine, monkeypatch, mode):
    u = random_ids(400, 122)
    every, p12, p1, none = u[:50], u[50:100], u[100:150], u[150:200]
    x = every + p12 + p1 + none
    lists = {"a": x, "p1": every + p12 + p1 + u[200:250], "p2": every + p12 + u[250:300],
             "p3": every + u[300:350]}
    captured = capture_decoded(monkeypatch)
    res = run_in_process(lists, "a", cfg(mode=mode), engine=engine)
    assert res["a"].size == 50
    names = ["p1", "p2", "p3"]
    pattern = {i: "every" for i in range(50)} | {i: "p12" for i in range(50, 100)} | \
        {i: "p1" for i in range(100, 150)} | {i: "none" for i in range(150, 200)}
    rows = captured["order"]
    for pos in range(len(rows)):
        o = {p: captured[p][pos] for p in names}
        for mask in range(1, 8):
            subset = [o[names[j]] for j in range(3) if mask >> j & 1]
            xor = np.bitwise_xor.reduce(subset)
            full = mask == 7
            if full and pattern[int(rows[pos])] == "every" and mode == "intersection":
                assert not xor.any()                    # all three shares of a common ID cancel
            else:
                assert xor.any(), (pattern[int(rows[pos])], mask)   # proper subsets never do


def test_sorted_exchange_refuses_double_blinded_values_that_are_not_strictly_ascending():
    """The peer must return our values sorted and distinct; a repeat would inflate the count it reports."""
    import os
    from types import SimpleNamespace

    from psi.core import setops
    from psi.errors import MalformedMessage
    from psi.protocol.base import InStream
    from psi.protocol.messages import Stage
    from psi.protocol.sorted_exchange import SortedExchange

    exchange = SortedExchange(SimpleNamespace(session_id="s"), "peer", b"salt", 4, 0, lambda count: None)
    exchange.own = SimpleNamespace(done=True)          # all of our values were sent
    exchange.in_double = InStream("s", "peer", Stage.DOUBLE, 8, 4)
    exchange.z_own = np.zeros((8, 2), dtype=np.uint64)
    values = setops.values_from_bytes(os.urandom(16 * 8))
    values = values[setops.sort_order(values)]
    exchange.on_double(Chunk("s", Stage.DOUBLE, 0, 4, setops.values_to_bytes(values[:4])))
    repeated = np.vstack([values[3:4], values[5:8]])   # the first item repeats the previous chunk's last
    with pytest.raises(MalformedMessage, match="chunk 1 from peer is not strictly ascending"):
        exchange.on_double(Chunk("s", Stage.DOUBLE, 1, 4, setops.values_to_bytes(repeated)))
