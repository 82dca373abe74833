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
from psi.core import curve25519, setops
from psi.core.curve25519 import blind_points
from psi.core.engine import Engine
from psi.core.hashing import hash_to_curve
from psi.protocol import two_party
from psi.protocol.messages import Chunk, Stage

from .psi_views import View, candidate_scalars, items, run_session, thread_party, weak_new_scalar

SID = "psi-adversary-session-0001"
JOB = {"job_id": "job-adversary-42"}

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

        def return_in_received_order(self):
            if thread_party() != peer:
                return real(self)
            for j in range(self.peer_chunks):
                part = self.z_peer[j * self.chunk:(j + 1) * self.chunk]
                self.send(self.peer, Chunk(self.session_id, Stage.DOUBLE, j, len(part), setops.values_to_bytes(part)))
            self.peer_next_return = self.peer_chunks

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
