"""PSI adversaries, one per role, for the "does not learn" claims of docs/psi.md.

Each adversary plays one role of a real in-process session with exactly what that role holds (a
:class:`~tests.adversary.psi_views.View`: its own IDs and output, the session parameters from the hello,
its own secret scalars/keys and send order, every message it received and sent) and tries to
reconstruct what the docs say it must not learn. Its claims are *certain* identifications (exact
matches of 16- or 32-byte values, false with probability ~2^-128) unless stated otherwise; the judge
compares them with the ground truth, which only the test holds.

Every adversary is also run against a deliberately weakened protocol (monkeypatched inside the test,
never in production code) and must then win: that shows the attack is real and would catch the
regression. "Derived from public session material" below means sha256(session id || party name) (or
sha256(session id) for t), one of the formulas in ``psi_views.candidate_secrets``, the dictionary every
adversary tries.

Sizes are small (hundreds of IDs; a few thousand for the row-order correlation) and everything runs in
process with a one-thread engine, so each test takes about a second.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

import psi
from psi.core import curve25519, okvs, oprf, seal, setops
from psi.core.curve25519 import blind_points
from psi.core.engine import Engine
from psi.core.hashing import hash_to_curve
from psi.core.oprf import okvs_seed
from psi.core.seal import EphemeralKey, SealedChannel
from psi.errors import ProtocolError
from psi.protocol import two_party
from psi.protocol.messages import Chunk, HelloReply, Mode, Sealed, Stage, Table
from psi.protocol.sorted_exchange import PREFIX, SortedExchange

from .psi_views import (View, candidate_scalars, candidate_secrets, derived, items, run_session, sealed_items,
                        thread_party, weak_inverse_pair, weak_new_scalar)

SID = "psi-adversary-session-0001"
JOB = {"job_id": "job-adversary-42"}

# The adversaries compute with the real primitives even while a test has patched the protocol's copies.
ZERO_SHARES, TOTALS, OPEN = oprf.zero_shares, oprf.totals, SealedChannel.open

# The rank correlation a role may reach between its guess of a peer's row order and the truth. With n
# common IDs and a shuffling peer, Spearman's rho is ~N(0, 1/(n-1)): for n = 2000, sd 0.022, so 0.1 is a
# 4.5-sigma bound; a peer that does not shuffle gives rho = 1.
MAX_RANK_CORRELATION = 0.1


@pytest.fixture(scope="module")
def engine():
    eng = Engine(0)
    yield eng
    eng.close()


def universe(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(f"person-{rng.getrandbits(60):015x}")
    ids = sorted(out)
    rng.shuffle(ids)
    return ids


def shuffled(values, seed: int) -> list[str]:
    out = list(values)
    random.Random(seed).shuffle(out)
    return out


def config(**kw) -> psi.PsiConfig:
    kw.setdefault("workers", 0)
    kw.setdefault("chunk_size", 64)
    kw.setdefault("timeout", 60)
    kw.setdefault("session_id", SID)
    kw.setdefault("metadata", dict(JOB))
    return psi.PsiConfig(**kw)


# ============================================================================= shared attack pieces
def h2c(values: list[str], salt: bytes) -> bytes:
    """The unblinded points of (already canonical) items: the adversary hashes its guesses itself."""
    return b"".join(hash_to_curve(v, salt) for v in values)


def scalars_hitting(scalars: list[bytes], probes: bytes, targets: set[bytes], width: int = 32) -> list[bytes]:
    """The candidate scalars under which at least one probe point lands in ``targets`` (a hit is an exact
    32/16-byte match, i.e. the right scalar). Probing a few points per candidate keeps the attack cheap."""
    hits = []
    for k in scalars:
        if any(o in targets for o in items(blind_points(k, probes, width, validate=False), width)):
            hits.append(k)
    return hits


def blinded_matches(scalars: list[bytes], values: list[str], points: bytes, targets: set[bytes],
                    width: int = 32) -> set[str]:
    found: set[str] = set()
    for k in scalars:
        out = items(blind_points(k, points, width, validate=False), width)
        found |= {v for v, o in zip(values, out) if o in targets}
    return found


def is_sorted(values: list[bytes]) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(np.asarray(a)))
    rb = np.argsort(np.argsort(np.asarray(b)))
    return float(np.corrcoef(ra, rb)[0, 1])


# ============================================================================= 2-party adversaries
def peer_of(view: View) -> str:
    return next(p for p in view.hello.parties if p != view.me)


def two_party_dictionary(view: View, candidates: list[str]) -> set[str]:
    """2-party, either role: which candidate IDs (outside its own set) does the role identify as the
    peer's? The peer's BLINDED points are H(y)^k_peer; the role tries every candidate scalar (public-
    material hashes, constants, its own scalar), keeps those under which one of its first 48 own IDs
    lands among the peer's points (that is the peer's scalar: checkable because own IDs in the
    intersection must match; a third of them are common here), and then blinds every candidate with them.
    A candidate is claimed only on an exact match."""
    peer = peer_of(view)
    peer_points = set(items(view.chunks(Stage.BLINDED, sender=peer), 32))
    own = view.canonical(view.ids)[:48]
    keys = scalars_hitting(candidate_scalars(view), h2c(own, view.salt), peer_points)
    cands = view.canonical(candidates)
    return blinded_matches(keys, cands, h2c(cands, view.salt), peer_points)


def peer_row_guess(view: View) -> dict[str, int]:
    """2-party intersection mode, either role: for each common ID, the role's guess of the peer's row.

    The role knows which of the peer's stream positions holds each common ID: the DOUBLE values it sent
    back (H(y)^ab, in the peer's stream order) equal the DOUBLE values it received for its own points
    (H(x)^ab, in its own send order, whose rows it knows). Its best guess of the peer's row is that
    stream position (or its rank)."""
    peer = peer_of(view)
    order = view.secrets["order"]
    peer_doubles = items(view.chunks(Stage.DOUBLE, recipient=peer, sent=True), 16)   # peer's order
    own_doubles = items(view.chunks(Stage.DOUBLE, sender=peer), 16)                   # own send order
    position = {v: i for i, v in enumerate(peer_doubles)}
    ids = view.canonical(view.ids)
    return {ids[order[i]]: position[v] for i, v in enumerate(own_doubles) if v in position}


def two_party_cardinality(view: View) -> tuple[set[str], set[str], set[int], int]:
    """2-party cardinality mode, either role: which of its own IDs, and which of the peer's rows, are common?

    Returns (certain, positional, peer_positions, count). ``count`` is |X ∩ Y| (legitimately learned).
    ``positional`` assumes the peer returned our DOUBLE values in the order we sent them (position i =
    our row order[i]) and takes the rows whose returned value is among the peer's double-blinded values:
    a best guess that is only evidence if the returned list is not sorted (a sorted list is a function
    of the values alone), so it is claimed as certain only then. The scalar route tries every candidate
    peer scalar k' and claims x when H(x)^k' is one of the peer's BLINDED points. ``peer_positions``:
    the positions in the peer's BLINDED stream whose double-blinded value is common, i.e. the guess of
    the peer's rows that holds if the peer sent its points in row order."""
    peer = peer_of(view)
    order = view.secrets["order"]
    ids = view.canonical(view.ids)
    returned = items(view.chunks(Stage.DOUBLE, sender=peer), 16)
    peer_points_raw = view.chunks(Stage.BLINDED, sender=peer)
    peer_doubles = items(blind_points(view.secrets["scalar"], peer_points_raw, 16), 16)   # peer's order
    common = set(returned) & set(peer_doubles)
    positional = {ids[order[i]] for i, v in enumerate(returned) if v in common}
    peer_positions = {i for i, v in enumerate(peer_doubles) if v in common}
    certain = set(positional) if not is_sorted(returned) else set()
    peer_points = set(items(peer_points_raw, 32))
    keys = scalars_hitting(candidate_scalars(view), h2c(ids[:48], view.salt), peer_points)
    certain |= blinded_matches(keys, ids, h2c(ids, view.salt), peer_points)
    return certain, positional, peer_positions, len(common)


def two_party_sets(seed: int, common: int, only: int, outsiders: int):
    u = universe(2 * common + 4 * only + outsiders, seed)
    c, x_only, y_only, nobody = u[:common], u[common:common + only], u[common + only:common + 2 * only], \
        u[common + 2 * only:common + 2 * only + outsiders]
    return c, x_only, y_only, nobody


# ----------------------------------------------------------------------------- 1 and 2: dictionary attack
def dictionary_setup(seed: int = 1):
    common, x_only, y_only, nobody = two_party_sets(seed, 100, 200, 200)
    lists = {"a": shuffled(common + x_only, seed), "p": shuffled(common + y_only, seed + 1)}
    # each role's dictionary: half true members of the peer's set outside its own, half non-members
    candidates = {"a": shuffled(y_only[:100] + nobody[:100], seed + 2),
                  "p": shuffled(x_only[:100] + nobody[100:], seed + 3)}
    truth = {"a": set(y_only[:100]), "p": set(x_only[:100])}
    return lists, candidates, truth


@pytest.mark.parametrize("role", ["a", "p"])
def test_two_party_dictionary_attack_finds_no_member_outside_the_intersection(engine, role):
    """Role: A (active) or P (passive), 2-party intersection mode, |X| = |Y| = 300, |X ∩ Y| = 100.
    Holds: its IDs, the hello (session id, salt, canonicalization, mode, job metadata), its scalar and
    send order, the peer's BLINDED points H(y)^b, the DOUBLE values it received (H(own)^ab) and sent.
    Tries: to tell which of 200 candidates (100 in the peer's set outside its own, 100 in nobody's) the
    peer holds, by blinding them under every candidate scalar (public-material hashes, constants, its own
    scalar) verified on its own common IDs.
    Must: identify no candidate (chance level for exact matches is 0).
    Beats: test_two_party_dictionary_attack_wins_against_weak_scalars."""
    lists, candidates, truth = dictionary_setup()
    session = run_session(lists, "a", config(), engine)
    assert session.results["a"].size == 100
    assert two_party_dictionary(session.views[role], candidates[role]) == set()


@pytest.mark.parametrize("role", ["a", "p"])
@pytest.mark.parametrize("weakness", ["peer scalar from session id", "one scalar for both parties"])
def test_two_party_dictionary_attack_wins_against_weak_scalars(engine, monkeypatch, role, weakness):
    """The same adversary (role A or P, same holdings) against weakened protocols: (1) the peer's
    blinding scalar is sha256(session id || peer name) instead of OS randomness; (2) both parties get
    the same scalar (a module-level constant: the adversary only needs its own). It must identify
    exactly the 100 true members among its 200 candidates, and no non-member."""
    lists, candidates, truth = dictionary_setup()
    peer = "p" if role == "a" else "a"
    if weakness.startswith("peer"):
        weak_new_scalar(monkeypatch, SID, {peer})
    else:
        shared = os.urandom(32)
        monkeypatch.setattr(curve25519, "new_scalar", lambda: shared)
    session = run_session(lists, "a", config(), engine)
    assert session.results["a"].size == 100               # the weakened protocol still "works"
    assert two_party_dictionary(session.views[role], candidates[role]) == truth[role]


# ----------------------------------------------------------------------------- 1 and 2: the peer's row order
def row_order_setup(seed: int = 2):
    common, x_only, y_only, _ = two_party_sets(seed, 2000, 250, 0)
    return {"a": shuffled(common + x_only, seed), "p": shuffled(common + y_only, seed + 1)}


def rank_correlation_with_peer_rows(session, role: str) -> tuple[float, int]:
    view = session.views[role]
    guess = peer_row_guess(view)
    peer_ids = session.views[peer_of(view)].ids          # ground truth: only the judge reads the peer's list
    true_row = {x: i for i, x in enumerate(peer_ids)}
    common = sorted(guess)
    return spearman([guess[x] for x in common], [true_row[x] for x in common]), len(common)


@pytest.mark.parametrize("role", ["a", "p"])
def test_two_party_role_does_not_learn_the_peer_row_order(engine, role):
    """Role: A or P, 2-party intersection mode, 2250 IDs each, 2000 common. Holds: as above (in
    particular the peer's BLINDED stream in the peer's send order, the DOUBLE values it returned in that
    order, and the DOUBLE values of its own points in its own order). Tries: to guess the peer's row of
    each common ID from the peer's stream position. Must: rank correlation with the peer's true rows
    |rho| < 0.1 (shuffling peer: rho ~ N(0, 0.022^2)).
    Beats: test_two_party_row_order_attack_wins_when_the_peer_does_not_shuffle (rho = 1)."""
    session = run_session(row_order_setup(), "a", config(chunk_size=256), engine)
    rho, n = rank_correlation_with_peer_rows(session, role)
    assert n == 2000
    assert abs(rho) < MAX_RANK_CORRELATION, rho


@pytest.mark.parametrize("role", ["a", "p"])
def test_two_party_row_order_attack_wins_when_the_peer_does_not_shuffle(engine, monkeypatch, role):
    """The same adversary against a weakened peer that sends its points in row order
    (two_party.secure_permutation returns the identity in the peer's thread): rho > 0.9."""
    peer = "p" if role == "a" else "a"
    real = two_party.secure_permutation
    monkeypatch.setattr(two_party, "secure_permutation",
                        lambda n: np.arange(n, dtype=np.int32) if thread_party() == peer else real(n))
    session = run_session(row_order_setup(), "a", config(chunk_size=256), engine)
    rho, n = rank_correlation_with_peer_rows(session, role)
    assert n == 2000 and rho > 0.9, rho


# ----------------------------------------------------------------------------- 4: cardinality mode
def cardinality_setup(seed: int = 4):
    common, x_only, y_only, _ = two_party_sets(seed, 200, 200, 0)
    lists = {"a": shuffled(common + x_only, seed), "p": shuffled(common + y_only, seed + 1)}
    return lists, set(common)


def peer_common_rows(session, role: str, common: set) -> set[int]:
    """Ground truth for the judge: the peer's rows holding common IDs."""
    peer_ids = session.views[peer_of(session.views[role])].ids
    return {i for i, x in enumerate(peer_ids) if x in common}


@pytest.mark.parametrize("role", ["a", "p"])
def test_cardinality_mode_role_learns_the_count_but_not_which_ids(engine, role):
    """Role: A or P, 2-party cardinality mode, 400 IDs each, 200 common. Holds: its IDs, the hello, its
    scalar and send order, the peer's BLINDED points (peer's order), the peer's DOUBLE values of its own
    points (sorted by the peer), the DOUBLE values it returned (sorted). Tries: which of its own IDs are
    common, (a) by position (returned value i <-> own send position i), claimed only if the returned list
    is not sorted, (b) with candidate peer scalars; and which of the peer's rows are common (positions
    in the peer's stream whose value is common). Must: learn |X ∩ Y| = 200, claim no own ID with
    certainty, and both positional guesses must be no better than chance (precision 0.5 ± 0.12).
    Beats: test_cardinality_attack_wins_against_weakened_protocols."""
    lists, common = cardinality_setup()
    session = run_session(lists, "a", config(mode="cardinality"), engine)
    assert session.results[role].size == 200 and session.results[role].ids is None
    certain, positional, peer_positions, count = two_party_cardinality(session.views[role])
    assert count == 200
    assert certain == set()
    precision = len(positional & common) / len(positional)
    assert abs(precision - 0.5) < 0.12, precision
    peer_precision = len(peer_positions & peer_common_rows(session, role, common)) / len(peer_positions)
    assert abs(peer_precision - 0.5) < 0.12, peer_precision


@pytest.mark.parametrize("role", ["a", "p"])
@pytest.mark.parametrize("weakness", ["peer returns values unsorted", "peer scalar from session id",
                                      "peer does not shuffle"])
def test_cardinality_attack_wins_against_weakened_protocols(engine, monkeypatch, role, weakness):
    """The same adversary against weakened cardinality modes: (1) the peer returns our DOUBLE values in
    the order received instead of sorted (TwoPartyRole._return_sorted patched in the peer's thread);
    (2) the peer's scalar is sha256(session id || peer name): either way it must name exactly the 200
    common own IDs; (3) the peer sends its points in row order (secure_permutation is the identity in
    its thread): it must name exactly the peer's 200 common rows."""
    lists, common = cardinality_setup()
    peer = "p" if role == "a" else "a"
    if weakness.startswith("peer returns"):
        real = two_party.TwoPartyRole._return_sorted
        real_on_blinded = two_party.TwoPartyRole._on_blinded

        def keep_received(self, msg):
            if thread_party() == peer:
                self.__dict__.setdefault("received_blinded", {})[msg.index] = msg.data
            return real_on_blinded(self, msg)

        def return_in_received_order(self):
            if thread_party() != peer:
                return real(self)
            for j in range(self.peer_chunks):
                data = blind_points(self.scalar, self.received_blinded[j], 16, True)
                self.send(self.peer, Chunk(self.session_id, Stage.DOUBLE, j, len(data) // 16, data))
            self.peer_next_return = self.peer_chunks

        monkeypatch.setattr(two_party.TwoPartyRole, "_on_blinded", keep_received)
        monkeypatch.setattr(two_party.TwoPartyRole, "_return_sorted", return_in_received_order)
    elif weakness.startswith("peer scalar"):
        weak_new_scalar(monkeypatch, SID, {peer})
    else:
        real_permutation = two_party.secure_permutation
        monkeypatch.setattr(two_party, "secure_permutation", lambda n: np.arange(n, dtype=np.int32)
                            if thread_party() == peer else real_permutation(n))
    session = run_session(lists, "a", config(mode="cardinality"), engine)
    assert session.results[role].size == 200
    certain, _, peer_positions, _ = two_party_cardinality(session.views[role])
    if weakness == "peer does not shuffle":
        assert peer_positions == peer_common_rows(session, role, common)
    else:
        assert certain == common


# ============================================================================= 3: N-party (A, P1, P2)
class NSets:
    """Every region of the Venn diagram of X, Y1, Y2, plus IDs nobody holds."""

    def __init__(self, seed: int = 3):
        u = universe(30 + 6 * 60 + 80, seed)
        sizes = {"I": 30, "XY1": 60, "XY2": 60, "Y12": 60, "X": 60, "Y1": 60, "Y2": 60, "nobody": 80}
        self.region: dict[str, set] = {}
        start = 0
        for name, n in sizes.items():
            self.region[name] = set(u[start:start + n])
            start += n
        r = self.region
        self.lists = {"a": shuffled(r["I"] | r["XY1"] | r["XY2"] | r["X"], seed),
                      "p1": shuffled(r["I"] | r["XY1"] | r["Y12"] | r["Y1"], seed + 1),
                      "p2": shuffled(r["I"] | r["XY2"] | r["Y12"] | r["Y2"], seed + 2)}
        self.sets = {k: set(v) for k, v in self.lists.items()}

    def outside(self, party: str) -> list[str]:
        """Dictionary candidates for ``party``: every ID it does not hold (members of the others' sets and
        IDs nobody holds), in a fixed random order."""
        return shuffled(sorted(set().union(*self.region.values()) - self.sets[party]), 99)


def n_active_material(view: View):
    """A's own derivations, as the protocol computes them, from its view only: its IDs in query order,
    per passive F_j(x) (removing a from the REPLY points) and o_j(x) = Decode(T_j, tag_j(x)) ^ mask_j(x)."""
    order = view.secrets["order"]
    ids = view.canonical([view.ids[r] for r in order])
    F, o = {}, {}
    for p in view.passives:
        F[p] = items(blind_points(view.secrets["a_inv"], view.chunks(Stage.REPLY, sender=p), 32), 32)
        tm = np.frombuffer(oprf.derive(b"".join(F[p]), view.sid, p), dtype=np.uint8).reshape(-1, 32)
        table = view.got(Table, sender=p)[0]
        cells = np.frombuffer(view.chunks(Stage.OKVS, sender=p), dtype=np.uint8).reshape(-1, 16)
        o[p] = okvs.decode(cells, np.ascontiguousarray(tm[:, :16]), okvs_seed(view.sid, p, table.attempt)) \
            ^ tm[:, 16:]
    return ids, F, o


def shares(view: View, t: bytes, j: int, values: list[str]) -> np.ndarray:
    m = len(view.passives)
    total = view.mode == Mode.CARDINALITY and j == m
    return np.frombuffer(ZERO_SHARES(values, t, view.sid, j, m, total), dtype=np.uint8).reshape(-1, 16)


def open_sealed(view: View, msg: Sealed, private: bytes) -> bytes | None:
    """Try to open a relayed sealed message as if ``private`` were the sender's or the recipient's
    ephemeral key (public keys come from the hello replies A received)."""
    pub = {p: view.got(HelloReply, sender=p)[0].ephemeral_key for p in view.passives}
    key = EphemeralKey.__new__(EphemeralKey)
    key._private = seal.X25519PrivateKey.from_private_bytes(private)
    for other_public in (pub[msg.sender], pub[msg.recipient]):
        try:
            channel = key.channel(msg.recipient, msg.sender, other_public, view.sid)
            return OPEN(channel, msg.stage, msg.index, msg.count, msg.ciphertext)
        except (ProtocolError, psi.InvalidPoint):
            continue
    return None


def n_active_attack(view: View, dictionary: list[str]) -> dict:
    """N-party, active party A. Claims (each beyond what A legitimately learns, i.e. minus its output I
    in intersection mode; in cardinality mode A learns no ID):

    * ``t``: the passives' zero-share key. Candidates: public-material hashes, every 32-byte window of the
      sealed KEY messages it relayed, and their plaintexts when they open under a candidate ephemeral
      private key. A candidate is confirmed when some own x has o_1(x) == s_1(x) under it (true exactly
      for x in Y1, and I ⊂ Y1 is non-empty).
    * ``own_in[Pj]``: own IDs in Yj, by o_j(x) == s_j(x) under the recovered t.
    * ``k[Pj]``: Pj's OPRF key, a candidate scalar k' with X25519(k', H(x)) == F_j(x) for one own x.
    * ``common_to_passives``: dictionary IDs (outside X) in every Yj: with every k_j, A evaluates
      F_j(e), decodes o_j(e) and tests XOR_j o_j(e) == 0 (intersection mode).
    * ``own_in_I`` (cardinality mode, where A must learn only |I|): own x with
      X25519(c', H(card item of XOR_j o_j(x))) among P1's exchange points for a candidate P1 exchange
      scalar c'.
    """
    ids, F, o = n_active_material(view)
    first, m = view.passives[0], len(view.passives)
    legit = set(view.output.ids or [])
    out: dict = {"t": None, "own_in": {p: set() for p in view.passives}, "k": {}, "common_to_passives": set(),
                 "own_in_I": set()}
    # sanity: from its view alone A recomputes its output (XOR_j o_j(x) == 0 exactly for x in I)
    total = np.bitwise_xor.reduce([o[p] for p in view.passives])
    out["I"] = {x for x, z in zip(ids, ~total.any(axis=1)) if z}
    # --- t
    cands = candidate_secrets(view)
    for msg in sealed_items(view):
        cands += [msg.ciphertext[i:i + 32] for i in range(len(msg.ciphertext) - 31)]
        for private in candidate_secrets(view):
            plain = open_sealed(view, msg, private)
            if plain is not None:
                cands.append(plain)
    for t in dict.fromkeys(cands):
        if (shares(view, t, 1, ids) == o[first]).all(axis=1).any():
            out["t"] = t
            break
    if out["t"] is not None:
        for j, p in enumerate(view.passives, 1):
            hit = (shares(view, out["t"], j, ids) == o[p]).all(axis=1)
            out["own_in"][p] = {x for x, h in zip(ids, hit) if h} - legit
    # --- the passives' OPRF keys
    probe = hash_to_curve(ids[0], view.salt)
    for p in view.passives:
        for k in candidate_secrets(view):
            if curve25519.blind_one(k, probe) == F[p][0]:
                out["k"][p] = k
    if len(out["k"]) == m and view.mode == Mode.INTERSECTION:
        cands = view.canonical(dictionary)
        points = h2c(cands, view.salt)
        xor = np.zeros((len(cands), 16), dtype=np.uint8)
        for p in view.passives:
            fe = blind_points(out["k"][p], points, 32, validate=False)
            tm = np.frombuffer(oprf.derive(fe, view.sid, p), dtype=np.uint8).reshape(-1, 32)
            table = view.got(Table, sender=p)[0]
            cells = np.frombuffer(view.chunks(Stage.OKVS, sender=p), dtype=np.uint8).reshape(-1, 16)
            xor ^= okvs.decode(cells, np.ascontiguousarray(tm[:, :16]),
                               okvs_seed(view.sid, p, table.attempt)) ^ tm[:, 16:]
        out["common_to_passives"] = {e for e, z in zip(cands, ~xor.any(axis=1)) if z}
    # --- cardinality mode: which own IDs are in I, via P1's exchange points
    if view.mode == Mode.CARDINALITY:
        card_items = [PREFIX + bytes(v).hex() for v in total]
        p1_points = set(items(view.chunks(Stage.BLINDED, sender=first), 32))
        points = h2c(card_items, view.salt)
        keys = scalars_hitting(candidate_secrets(view), points[:32 * 128], p1_points)
        hits = blinded_matches(keys, list(range(len(ids))), points, p1_points)
        out["own_in_I"] = {ids[i] for i in hits} - legit
    return out


@pytest.mark.parametrize("mode", ["intersection", "cardinality"])
def test_n_party_active_learns_only_the_full_intersection(engine, mode):
    """Role: A, 3 parties (A, P1, P2), |X| = |Yj| = 210, |I| = 30, |X ∩ Y1| = |X ∩ Y2| = 90,
    |Y1 ∩ Y2| = 90. Holds: its IDs and output, the hello it sent, a, a_inv, its query order (cardinality:
    its exchange scalar), every hello reply (sizes, ephemeral public keys), the sealed KEY it relayed,
    every REPLY, Table and OKVS chunk (cardinality: P1's exchange points and returned values).
    Tries: to recover t (public-material candidates, windows of the sealed messages, opening them with
    candidate ephemeral keys), each passive's OPRF key, which own IDs are in Y1 or Y2 (decoding each
    OKVS at its own tags), which dictionary IDs outside X are in Y1 ∩ Y2, and, in cardinality mode,
    which own IDs are in I. Must: find nothing beyond I (intersection mode) / nothing at all
    (cardinality mode). Beats: test_n_party_active_attack_wins_against_weakened_protocols."""
    s = NSets()
    session = run_session(s.lists, "a", config(mode=mode), engine)
    assert session.results["a"].size == 30
    out = n_active_attack(session.views["a"], s.outside("a"))
    assert out["I"] == (s.region["I"] if mode == "intersection" else set())    # the view is complete
    assert out["t"] is None and out["k"] == {}
    assert out["own_in"] == {"p1": set(), "p2": set()}
    assert out["common_to_passives"] == set() and out["own_in_I"] == set()


def _sealing_disabled(monkeypatch):
    monkeypatch.setattr(SealedChannel, "seal", lambda self, stage, index, count, plaintext: plaintext + bytes(16))
    monkeypatch.setattr(SealedChannel, "open", lambda self, stage, index, count, ciphertext: ciphertext[:32])


def _ephemeral_keys_from_session(monkeypatch):
    def init(self):
        self._private = seal.X25519PrivateKey.from_private_bytes(derived(SID, thread_party()))
        self.public = self._private.public_key().public_bytes_raw()

    monkeypatch.setattr(EphemeralKey, "__init__", init)


def _t_from_session(monkeypatch):
    real_shares, real_totals = oprf.zero_shares, oprf.totals
    monkeypatch.setattr(oprf, "zero_shares", lambda ids, t, sid, *a: real_shares(ids, derived(sid), sid, *a))
    monkeypatch.setattr(oprf, "totals", lambda ids, t, sid: real_totals(ids, derived(sid), sid))


@pytest.mark.parametrize("weakness,mode", [
    ("zero-shares use t = sha256(session id)", "intersection"),
    ("zero-shares use t = sha256(session id)", "cardinality"),
    ("sealing disabled (t relayed in clear)", "intersection"),
    ("ephemeral keys from session id", "intersection"),
    ("passive OPRF keys from session id", "intersection"),
    ("P1 exchange scalar from session id", "cardinality"),
])
def test_n_party_active_attack_wins_against_weakened_protocols(engine, monkeypatch, weakness, mode):
    """The same A adversary against weakened N-party protocols; what it must then find:
    t weak, sealing off, or ephemeral keys derivable -> t, and exactly which own IDs are in Y1 and in Y2
    beyond its output (X ∩ Y1 \\ I and X ∩ Y2 \\ I, 60 each; in cardinality mode including I), hence
    |X ∩ Y1| and |X ∩ Y2|; passive OPRF keys derivable ->
    both keys and exactly the 60 dictionary IDs in Y1 ∩ Y2 \\ X; P1's cardinality-exchange scalar
    derivable -> exactly the 30 own IDs in I (A must learn only |I| in cardinality mode)."""
    s = NSets()
    r = s.region
    if weakness.startswith("zero-shares"):
        _t_from_session(monkeypatch)
    elif weakness.startswith("sealing"):
        _sealing_disabled(monkeypatch)
    elif weakness.startswith("ephemeral"):
        _ephemeral_keys_from_session(monkeypatch)
    else:
        weak_new_scalar(monkeypatch, SID, {"p1", "p2"} if weakness.startswith("passive") else {"p1"})
    session = run_session(s.lists, "a", config(mode=mode), engine)
    assert session.results["a"].size == 30
    out = n_active_attack(session.views["a"], s.outside("a"))
    if "OPRF" in weakness:
        assert set(out["k"]) == {"p1", "p2"}
        assert out["common_to_passives"] == r["Y12"]
    elif "exchange" in weakness:
        assert out["own_in_I"] == r["I"]
    else:
        assert out["t"] is not None
        if not weakness.startswith("zero-shares"):     # the very key P1 drew and sealed
            assert out["t"] == session.views["p2"].secrets["t"] == session.views["p1"].secrets["t"]
        learned = r["I"] if mode == "intersection" else set()      # A's legitimate output
        assert out["own_in"] == {"p1": (r["I"] | r["XY1"]) - learned, "p2": (r["I"] | r["XY2"]) - learned}


# ----------------------------------------------------------------------------- N-party passives
def n_passive_attack(view: View, dictionary: list[str]) -> dict:
    """N-party, passive party Pj. Claims (beyond I, which Pj learns in intersection mode):

    * ``in_X``: own or dictionary IDs that A holds. A's QUERY points are X25519(a, H(x)); Pj tries every
      candidate a (public-material hashes, read as scalars and as seeds of a clamped inverse pair; its
      own k, t and ephemeral key), keeps those under which one of its own IDs lands among the queries,
      and blinds everything with them.
    * ``own_in_I`` (cardinality mode, P1 only; P1 must learn only |I|): (a) a candidate A exchange scalar
      c' with X25519(c', H(card item of R(y))) among A's exchange points (c(x) = R(x) exactly for x in I);
      (b) position: if A returned P1's exchange values unsorted, value i belongs to P1's point i.
    * ``other_via_exchange`` (cardinality mode, P1 only): dictionary IDs in X ∩ Y2 (the other passive's
      IDs): for x in X ∩ Y2, A's value is c(x) = o_1(x) ^ s_2(x), which P1 can compute for any guess e from
      its own OKVS table, its key k_1 and t; it looks for X25519(c', H(card item of c(e))).
    * ``other_via_table[Pi]``: dictionary IDs in Yi, if Pi's OKVS table ever reaches Pj (it must not: only
      A receives it): decode it at tag_i(e) under a candidate k_i and compare with s_i(e) (Pj knows t).
    """
    j, m = view.passives.index(view.me) + 1, len(view.passives)
    card = view.mode == Mode.CARDINALITY
    legit = set(view.output.ids or [])
    own = view.canonical(view.ids)
    dictionary = view.canonical(dictionary)
    out: dict = {"in_X": set(), "own_in_I": set(), "other_via_exchange": set(), "other_via_table": {}}
    # --- A's IDs, through its OPRF queries
    queries = set(items(view.chunks(Stage.QUERY, sender=view.active), 32))
    keys = scalars_hitting(candidate_scalars(view), h2c(own[:64], view.salt), queries)
    probes = own + dictionary
    out["in_X"] = blinded_matches(keys, probes, h2c(probes, view.salt), queries) - legit
    # --- the cardinality exchange (P1 only)
    if card and view.me == view.passives[0]:
        t, k = view.secrets["t"], view.secrets["k"]
        a_points_raw = view.chunks(Stage.BLINDED, sender=view.active)
        a_points = set(items(a_points_raw, 32))
        r_items = [PREFIX + v.hex() for v in items(TOTALS(own, t, view.sid), 16)]
        # c(e) for dictionary guesses, from P1's own table
        table = next(msg for _, msg in view.sent if isinstance(msg, Table))
        cells = np.frombuffer(view.chunks(Stage.OKVS, recipient=view.active, sent=True), dtype=np.uint8)
        tm = np.frombuffer(oprf.derive(blind_points(k, h2c(dictionary, view.salt), 32, validate=False),
                                       view.sid, view.me), dtype=np.uint8).reshape(-1, 32)
        c = okvs.decode(cells.reshape(-1, 16), np.ascontiguousarray(tm[:, :16]),
                        okvs_seed(view.sid, view.me, table.attempt)) ^ tm[:, 16:]
        for i in range(1, m + 1):
            if i != j:
                c = c ^ shares(view, t, i, dictionary)
        c_items = [PREFIX + bytes(v).hex() for v in c]
        r_points, c_points = h2c(r_items, view.salt), h2c(c_items, view.salt)
        keys = scalars_hitting(candidate_secrets(view), r_points[:32 * 128] + c_points[:32 * 64], a_points)
        out["own_in_I"] = blinded_matches(keys, own, r_points, a_points)
        out["other_via_exchange"] = blinded_matches(keys, dictionary, c_points, a_points) - legit
        returned = items(view.chunks(Stage.DOUBLE, sender=view.active), 16)
        if not is_sorted(returned):
            c1 = view.secrets["exchange_scalar"]
            mine = {p: x for x, p in zip(own, items(blind_points(c1, r_points, 32, validate=False), 32))}
            sent = items(view.chunks(Stage.BLINDED, recipient=view.active, sent=True), 32)
            a_doubles = set(items(blind_points(c1, a_points_raw, 16), 16))
            out["own_in_I"] |= {mine[sent[i]] for i, v in enumerate(returned) if v in a_doubles}
    # --- another passive's table, if it ever reached us
    for i, p in enumerate(view.passives, 1):
        tables = view.got(Table, sender=p) if p != view.me else []
        if not tables:
            continue
        cells = np.frombuffer(view.chunks(Stage.OKVS, sender=p), dtype=np.uint8).reshape(-1, 16)
        s_i = shares(view, view.secrets["t"], i, dictionary)
        points = h2c(dictionary, view.salt)
        found: set[str] = set()
        for k in candidate_secrets(view):
            tm = np.frombuffer(oprf.derive(blind_points(k, points, 32, validate=False), view.sid, p),
                               dtype=np.uint8).reshape(-1, 32)
            o = okvs.decode(cells, np.ascontiguousarray(tm[:, :16]), okvs_seed(view.sid, p, tables[0].attempt)) \
                ^ tm[:, 16:]
            found |= {e for e, h in zip(dictionary, (o == s_i).all(axis=1)) if h}
        out["other_via_table"][p] = found - legit
    return out


@pytest.mark.parametrize("mode", ["intersection", "cardinality"])
@pytest.mark.parametrize("role", ["p1", "p2"])
def test_n_party_passive_learns_nothing_about_x_or_the_other_passive(engine, mode, role):
    """Role: P1 or P2, 3 parties, same sets as the A test. Holds: its IDs and output, the hello and
    roster (all set sizes, ephemeral keys), k_j, t, its ephemeral private key, its send order, A's QUERY
    points, its REPLY and OKVS, Count, ALIGN tags and Done (P1 in cardinality mode: its exchange scalar,
    A's exchange points and the values A returned, sorted). Tries: which own and dictionary IDs are in X
    (candidate a), and, P1 in cardinality mode, which own IDs are in I and which dictionary IDs are in
    X ∩ Y2 (candidate A exchange scalars; position in the returned list). Must: nothing beyond I.
    Beats: test_n_party_passive_attack_wins_against_weakened_protocols."""
    s = NSets()
    session = run_session(s.lists, "a", config(mode=mode), engine)
    assert session.results[role].size == 30
    out = n_passive_attack(session.views[role], s.outside(role))
    assert out == {"in_X": set(), "own_in_I": set(), "other_via_exchange": set(), "other_via_table": {}}


def test_n_party_passive_never_receives_the_other_passive_table(engine):
    """Role: P2, intersection mode, holdings as above, including t. Tries: to decode P1's OKVS table at
    tag_1(e) for dictionary IDs e under candidate OPRF keys and compare with s_1(e) (P2 knows t): the
    only way a passive could test membership in another passive's set. Must: P1's table never reaches
    P2 (no Table/OKVS from P1 in its view), so there is nothing to decode and nothing found.
    Beats: the "A relays P1's table" variant of
    test_n_party_passive_attack_wins_against_weakened_protocols (with P1's key derivable as well, since
    the table alone is oblivious without k_1)."""
    s = NSets()
    session = run_session(s.lists, "a", config(), engine)
    view = session.views["p2"]
    assert {sender for sender, _ in view.received} == {"a"}
    assert not view.got(Table) and not view.chunks(Stage.OKVS)
    assert n_passive_attack(view, s.outside("p2"))["other_via_table"] == {}


@pytest.mark.parametrize("weakness,mode,role", [
    ("A's pair (a, a_inv) from session id", "intersection", "p2"),
    ("A's pair (a, a_inv) from session id", "cardinality", "p1"),
    ("A's exchange scalar from session id", "cardinality", "p1"),
    ("A returns P1's exchange values unsorted", "cardinality", "p1"),
    ("A relays P1's table to P2 and P1's OPRF key is from session id", "intersection", "p2"),
])
def test_n_party_passive_attack_wins_against_weakened_protocols(engine, monkeypatch, weakness, mode, role):
    """The same passive adversary against weakened N-party protocols; what it must then find:
    A's pair derivable -> exactly the own and dictionary IDs in X (beyond I);
    A's exchange scalar derivable -> P1 names exactly its 30 IDs in I and the 60 dictionary IDs in
    X ∩ Y2 \\ Y1 (the other passive's IDs);
    A returns P1's values unsorted (and P1's ascending check is off) -> P1 names exactly its IDs in I;
    A relays P1's OKVS to P2 and P1's OPRF key is sha256(session id || p1) -> P2 names exactly the
    dictionary IDs in Y1 (the OKVS is oblivious, so the relay alone is not enough)."""
    s = NSets()
    r = s.region
    if weakness.startswith("A's pair"):
        weak_inverse_pair(monkeypatch, SID, "a")
    elif weakness.startswith("A's exchange"):
        weak_new_scalar(monkeypatch, SID, {"a"})
    elif weakness.startswith("A returns"):
        real = SortedExchange._return_sorted

        def return_in_received_order(self):
            if thread_party() != "a":
                return real(self)
            for j in range(self.peer_chunks):
                part = self.z_peer[j * self.chunk:(j + 1) * self.chunk]
                self.party.send(self.peer, Chunk(self.party.session_id, Stage.DOUBLE, j, len(part),
                                                 setops.values_to_bytes(part)))
            self.returned = True

        monkeypatch.setattr(SortedExchange, "_return_sorted", return_in_received_order)
        monkeypatch.setattr(SortedExchange, "_check_sorted", lambda self, *a: None)
    else:
        weak_new_scalar(monkeypatch, SID, {"p1"})
    session = run_session(s.lists, "a", config(mode=mode), engine)
    assert session.results[role].size == 30
    view = session.views[role]
    dictionary = s.outside(role)
    if "relays" in weakness:
        # the relay regression: what P1 sent A (Table, OKVS chunks) also reaches P2
        view.received += [("p1", msg) for sender, msg in session.views["a"].received
                          if sender == "p1" and (isinstance(msg, Table) or getattr(msg, "stage", None) == Stage.OKVS)]
    out = n_passive_attack(view, dictionary)
    x = s.sets["a"]
    own = s.sets[role]
    if weakness.startswith("A's pair"):
        legit = r["I"] if mode == "intersection" else set()
        assert out["in_X"] == ((own | set(dictionary)) & x) - legit
    elif weakness.startswith("A's exchange"):
        assert out["own_in_I"] == r["I"]
        assert out["other_via_exchange"] == r["XY2"]
    elif weakness.startswith("A returns"):
        assert out["own_in_I"] == r["I"]
        assert out["other_via_exchange"] == set()
    else:
        assert out["other_via_table"] == {"p1": set(dictionary) & s.sets["p1"]}


# ============================================================================= input errors (2-party)
def duplicate_at_peer(view: View) -> tuple[set[str], set[str]]:
    """2-party, either role, after the peer aborted because of a duplicate ID: (the duplicated ID if this
    role holds it, the common IDs of the aborted session). The peer's duplicate rows arrive as two equal
    BLINDED points H(d)^k; this role applies its scalar and looks the result up among the DOUBLE values
    the peer already returned for its own points (H(y)^ab, in its send order, whose rows it knows)."""
    peer = peer_of(view)
    peer_points = items(view.chunks(Stage.BLINDED, sender=peer), 32)
    if not peer_points or "scalar" not in view.secrets:
        return set(), set()             # the peer sent no point: nothing to look up
    order = view.secrets["order"]
    ids = view.canonical(view.ids)
    repeated = {p for p in peer_points if peer_points.count(p) > 1}
    own_doubles = items(view.chunks(Stage.DOUBLE, sender=peer), 16)
    row_of = {v: order[i] for i, v in enumerate(own_doubles)}
    doubles = items(blind_points(view.secrets["scalar"], b"".join(peer_points), 16), 16)
    common = {ids[row_of[d]] for d in doubles if d in row_of}
    duplicated = {ids[row_of[d]] for d, p in zip(doubles, peer_points) if p in repeated and d in row_of}
    return duplicated, common


@pytest.mark.parametrize("owner", ["a", "p"])
def test_a_peer_with_a_duplicate_id_reveals_only_that_its_input_is_invalid(engine, owner):
    """FLAW (docs/psi.md, "Salt, canonicalization, duplicates": "The peers only learn 'the other party's
    input is invalid'"). Role: the peer of the party whose input holds one ID twice (as " d" and "d",
    equal after canonicalization), 2-party intersection mode; d is also the role's own ID. Holds: its
    IDs, the hello, its scalar and send order, everything the owner sent before aborting: its BLINDED
    points and the DOUBLE values of the role's own points. Tries: to name the duplicated ID and to
    compute the intersection of the aborted session (blind the owner's points with its own scalar and
    look them up among its returned DOUBLE values). Must (per the docs): neither.
    Failed before the fix (commit "PSI: check own IDs before any point leaves"): the owner checked for
    duplicates only after its last BLINDED chunk had been sent, and by then it had returned the role's DOUBLE
    chunks, so the role held the whole exchange, and the two equal points named the duplicate. Now every
    party checks its whole input (canonical form, nulls, duplicates) before its first point; the control
    `test_duplicate_attack_wins_when_the_check_comes_last` shows the attack against the old order."""
    common, own_only, peer_only, _ = two_party_sets(5, 50, 1950, 0)
    d = common[0]
    role = "p" if owner == "a" else "a"
    lists = {owner: shuffled(common + own_only, 5) + [" " + d], role: shuffled(common + peer_only[:50], 6)}
    session = run_session({k: lists[k] for k in ("a", "p")}, "a", config(chunk_size=64), engine, allow_error=True)
    assert isinstance(session.error, psi.DuplicateIdError)
    duplicated, learned = duplicate_at_peer(session.views[role])
    assert (duplicated, learned) == (set(), set()), (
        f"{role} named {owner}'s duplicated ID ({duplicated == {d}}) and the {len(learned)} common IDs of "
        "the aborted session")


@pytest.mark.parametrize("owner", ["a", "p"])
def test_duplicate_attack_wins_when_the_check_comes_last(engine, owner, monkeypatch):
    """Control for the test above: with the owner's input check skipped before the exchange (as when it ran
    only after the last BLINDED chunk), the same role names the duplicated ID and the common IDs."""
    import psi.protocol.two_party as two_party
    monkeypatch.setattr(two_party, "check_own_ids", lambda *args: None)
    common, own_only, peer_only, _ = two_party_sets(5, 50, 1950, 0)
    d = common[0]
    role = "p" if owner == "a" else "a"
    lists = {owner: shuffled(common + own_only, 5) + [" " + d], role: shuffled(common + peer_only[:50], 6)}
    session = run_session({k: lists[k] for k in ("a", "p")}, "a", config(chunk_size=64), engine, allow_error=True)
    duplicated, learned = duplicate_at_peer(session.views[role])
    assert duplicated == {d} and len(learned) == len(common)


@pytest.mark.parametrize("owner", ["a", "p"])
def test_an_invalid_id_aborts_before_any_point_leaves(engine, owner):
    """Role: the peer of a party whose last row holds an empty ID. Holds: everything the owner sent. Tries: any
    point of the owner's, to match against its own set (as with the duplicate above). Gets: none; the
    session ends with the owner's clear input error. Before the input check, the owner sent every chunk
    before the one with the empty ID and the peer could intersect them."""
    common, own_only, peer_only, _ = two_party_sets(7, 50, 1950, 0)
    role = "p" if owner == "a" else "a"
    lists = {owner: shuffled(common + own_only, 7) + ["   "], role: shuffled(common + peer_only[:50], 8)}
    session = run_session({k: lists[k] for k in ("a", "p")}, "a", config(chunk_size=64), engine, allow_error=True)
    assert isinstance(session.error, psi.PsiInputError) and "empty" in str(session.error)
    assert session.views[role].chunks(Stage.BLINDED, sender=owner) == b""
