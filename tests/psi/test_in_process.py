"""The in-process API: correctness against plain set intersection, edge cases, N parties, input errors."""
from __future__ import annotations

import queue
import random

import numpy as np
import pytest

import psi
from psi import DuplicateIdError, InvalidPoint, Mode, PeerError, PsiConfig, PsiConfigError, PsiInputError, run_in_process
from psi.core.hashing import Canonicalization
from psi.protocol.link import Link, link_pair
from psi.protocol.messages import Chunk, Stage
from psi.protocol.session import receive_hello, run_active, run_passive

from .conftest import random_ids


def check(results: dict, id_lists: dict, canon=Canonicalization()):
    """Every party: the plain intersection, the same order, and its own rows in that order."""
    sets = [{canon.apply(x) for x in ids} for ids in id_lists.values()]
    expected = set.intersection(*sets)
    orders = [r.ids for r in results.values()]
    assert set(orders[0]) == expected and len(orders[0]) == len(expected)
    assert all(o == orders[0] for o in orders)
    for name, r in results.items():
        assert r.size == len(expected)
        assert r.set_sizes == {n: len(v) for n, v in id_lists.items()}
        assert [canon.apply(id_lists[name][i]) for i in r.rows] == r.ids
    return orders[0]


def cfg(**kw):
    kw.setdefault("workers", 0)
    kw.setdefault("chunk_size", 97)     # several chunks, and a short last one
    return PsiConfig(**kw)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_party_random_sets_equal_plain_intersection(engine, seed):
    rng = random.Random(seed)
    universe = random_ids(1200, seed)
    a = rng.sample(universe, rng.randint(1, 700))
    b = rng.sample(universe, rng.randint(1, 700))
    res = run_in_process({"alice": a, "bob": b}, "alice", cfg(), engine=engine)
    order = check(res, {"alice": a, "bob": b})
    # the agreed order is not the order of either input, nor sorted IDs
    if len(order) > 20:
        assert order != sorted(order)


def test_empty_intersection_identical_sets_and_empty_sets(engine):
    u = random_ids(600, 4)
    a, b = u[:300], u[300:]
    res = run_in_process({"A": a, "B": b}, "A", cfg(), engine=engine)
    assert res["A"].size == res["B"].size == 0 and res["A"].ids == [] and len(res["B"].rows) == 0
    same = list(reversed(a))
    res = run_in_process({"A": a, "B": same}, "A", cfg(), engine=engine)
    assert check(res, {"A": a, "B": same}) and res["A"].size == 300
    res = run_in_process({"A": [], "B": b}, "A", cfg(), engine=engine)
    assert res["A"].size == 0 and res["B"].set_sizes == {"A": 0, "B": 300}


@pytest.mark.parametrize("parties", [3, 4])
def test_n_party_intersection(engine, parties):
    rng = random.Random(parties)
    universe = random_ids(900, 10 + parties)
    core = universe[:120]                                   # in everyone's set
    lists = {}
    for i in range(parties):
        extra = rng.sample(universe[120:], 300)             # pairwise overlaps outside the common core
        ids = core + extra
        rng.shuffle(ids)
        lists[f"p{i}"] = list(dict.fromkeys(ids))
    res = run_in_process(lists, "p0", cfg(), engine=engine)
    common = check(res, lists)
    assert set(core) <= set(common)


def test_n_party_empty_and_cardinality(engine):
    u = random_ids(400, 21)
    lists = {"a": u[:200], "b": u[100:300], "c": u[250:400]}     # pairwise overlaps, empty triple overlap
    res = run_in_process(lists, "a", cfg(), engine=engine)
    assert all(r.size == 0 for r in res.values())
    lists = {"a": u[:300], "b": u[100:400], "c": u[150:350], "d": u[:400]}
    res = run_in_process(lists, "a", cfg(mode="cardinality"), engine=engine)
    assert {r.size for r in res.values()} == {150}
    assert all(r.ids is None and r.rows is None for r in res.values())


def test_cardinality_mode_reveals_only_the_size(engine):
    u = random_ids(500, 22)
    res = run_in_process({"A": u[:300], "B": u[200:]}, "A", cfg(mode=Mode.CARDINALITY), engine=engine)
    assert res["A"].size == res["B"].size == 100
    assert res["A"].ids is None and res["B"].rows is None


def test_unicode_and_very_long_ids(engine):
    base = ["José-Ñúñez-0001-ü", "東京都-顧客-ⅠⅡⅢ-0002", "🙂🙃-emoji-id-0003", "a" * 100_000, "b" * 100_000 + "é",
            "Ελληνικά-0004-ωμέγα", "זהות-0005-עברית"]
    a = base + random_ids(50, 23)
    b = list(reversed(base[:5])) + ["a" * 99_999, "🙂🙃-emoji-id-0004"] + random_ids(50, 24)
    res = run_in_process({"A": a, "B": b}, "A", cfg(), engine=engine)
    assert set(check(res, {"A": a, "B": b})) == set(base[:5])


def test_canonicalization_settings_apply_to_both_parties(engine):
    a = ["  Alice-Customer-01 ", "bob-customer-02", "CAROL-customer-03"]
    b = ["alice-customer-01", "bob-customer-02 ", "Carol-Customer-03"]
    res = run_in_process({"A": a, "B": b}, "A", cfg(strip=True, lowercase=True), engine=engine)
    assert res["A"].size == 3 and res["A"].ids == res["B"].ids
    assert set(res["A"].ids) == {"alice-customer-01", "bob-customer-02", "carol-customer-03"}
    res = run_in_process({"A": a, "B": b}, "A", cfg(strip=True, lowercase=False), engine=engine)
    assert res["A"].ids == res["B"].ids == ["bob-customer-02"]
    res = run_in_process({"A": a, "B": b}, "A", cfg(strip=False, lowercase=True), engine=engine)
    assert res["A"].ids == res["B"].ids == ["carol-customer-03"]


def test_duplicate_ids_are_rejected_naming_the_duplicate(engine):
    a = random_ids(300, 25)
    dup = a[:150] + [a[42]] + a[150:]
    with pytest.raises(DuplicateIdError, match=rf"duplicate ID '{a[42]}' at rows 42 and 150"):
        run_in_process({"A": dup, "B": a}, "A", cfg(), engine=engine)
    # a duplicate after canonicalization, on the passive side
    b = a[:10] + ["  " + a[3].upper() + " "]
    with pytest.raises(DuplicateIdError, match=r"rows 3 and 10"):
        run_in_process({"A": a, "B": b}, "A", cfg(lowercase=True), engine=engine)


def test_bad_ids_are_reported_with_their_row(engine):
    a = random_ids(50, 26)
    for bad, message in ((None, "row 7: ID is missing"), ("   ", "row 7: ID '   ' is empty"), (3.5, "row 7: ID 3.5")):
        ids = a[:7] + [bad] + a[7:]
        with pytest.raises(PsiInputError, match=message):
            run_in_process({"A": ids, "B": a}, "A", cfg(), engine=engine)


def test_id_sources_numpy_pandas_pyarrow(engine):
    import pandas as pd
    import pyarrow as pa
    u = random_ids(400, 27)
    a, b = u[:250], u[150:]
    expected = set(u[150:250])
    for src_a, src_b in ((np.array(a), pd.Series(b)), (pa.array(a), pa.chunked_array([b[:100], b[100:]])),
                         (np.array([x.encode() for x in a]), tuple(b))):
        res = run_in_process({"A": src_a, "B": src_b}, "A", cfg(), engine=engine)
        assert set(res["A"].ids) == expected and res["A"].ids == res["B"].ids


def test_process_pool_engine(tmp_path):
    """The default engine: a spawn-context process pool."""
    u = random_ids(3000, 28)
    res = run_in_process({"A": u[:2000], "B": u[1000:]}, "A", PsiConfig(workers=2, chunk_size=500))
    assert res["A"].size == 1000 and res["A"].ids == res["B"].ids


def test_config_validation():
    with pytest.raises(PsiConfigError, match="chunk_size"):
        PsiConfig(chunk_size=100_000)
    with pytest.raises(PsiConfigError, match="mode"):
        PsiConfig(mode="union")
    with pytest.raises(PsiConfigError, match="session id"):
        PsiConfig(session_id="has space")
    with pytest.raises(PsiConfigError, match="salt"):
        PsiConfig(salt=b"short")
    with pytest.raises(PsiConfigError, match="active party"):
        run_in_process({"A": ["x"]}, "B")
    with pytest.raises(PsiConfigError, match="two parties"):
        run_in_process({"A": ["x"]}, "A")


class TamperingLink(Link):
    """Flips the curve/twist status of one point in the first BLINDED chunk the passive sends."""

    def __init__(self, inner):
        self.inner, self.peer, self.done = inner, inner.peer, False

    def send(self, msg):
        if isinstance(msg, Chunk) and msg.stage == Stage.BLINDED and not self.done:
            self.done = True
            data = bytearray(msg.data)
            data[5 * 32:6 * 32] = (2).to_bytes(32, "little")   # u = 2 is on the twist
            msg = Chunk(msg.session_id, msg.stage, msg.index, msg.count, bytes(data))
        self.inner.send(msg)

    def close(self):
        self.inner.close()


def test_invalid_point_from_a_peer_names_chunk_and_point(engine):
    """The protocol validates what the passive party sends too (here without gRPC)."""
    u = random_ids(300, 29)
    inbox_a, inbox_b = queue.Queue(), queue.Queue()
    link_a, link_b = link_pair("A", inbox_a, "B", inbox_b)
    errors = {}

    def passive():
        try:
            _, hello = receive_hello(inbox_b, 10)
            run_passive(TamperingLink(link_b), inbox_b, hello, u[100:], engine=engine, timeout=10)
        except Exception as exc:
            errors["B"] = exc

    import threading
    t = threading.Thread(target=passive)
    t.start()
    with pytest.raises(InvalidPoint, match=r"blinded points from B: chunk 0, point 5 \(item 5\): .*twist"):
        run_active({"B": link_a}, inbox_a, u[:200], cfg(timeout=10), me="A", engine=engine)
    t.join(10)
    assert isinstance(errors["B"], PeerError) and "A aborted" in str(errors["B"])


def test_public_api_surface():
    for name in ("run_in_process", "PsiConfig", "PsiResult", "PsiError", "Mode", "Canonicalization"):
        assert hasattr(psi, name)


def test_flow_control_bounds_points_waiting_at_the_peer(engine, monkeypatch):
    """A party never has more than max_outstanding of its chunks unreturned by the peer (memory at the peer)."""
    from psi.protocol import base, two_party
    monkeypatch.setattr(two_party, "MAX_OUTSTANDING_BYTES", 4 * 32 * 10)     # 4 chunks of 10 points
    seen = []
    original = base.OwnStream.pump

    def pump(self):
        original(self)
        if self.max_outstanding is not None:
            seen.append((self.next_submit - self.acknowledged, self.max_outstanding))

    monkeypatch.setattr(base.OwnStream, "pump", pump)
    u = random_ids(600, 30)
    res = run_in_process({"A": u[:400], "B": u[200:]}, "A", cfg(chunk_size=10), engine=engine)
    assert res["A"].size == 200
    assert seen and max(s for s, _ in seen) <= 4 and {m for _, m in seen} == {4}
