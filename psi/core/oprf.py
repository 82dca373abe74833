"""The per-ID values of the N-party protocol: OPRF outputs, the tags and masks derived from them, the
passives' XOR zero-shares, and the OKVS seeds. See docs/psi.md ("N-party protocol").

* OPRF of passive j (key k_j, never leaves P_j): ``F_j(e) = X25519(k_j, H(e))`` with H the salted
  hash-to-curve of :mod:`psi.core.hashing`. P_j evaluates it on its own IDs directly; the active party gets
  it obliviously: it sends ``X25519(a, H(x))``, P_j applies k_j, and A removes a with ``a_inv``
  (:func:`psi.core.curve25519.inverse_scalar_pair`).
* Tag and mask, bound to the session and to j's name (so two passives' tags of one ID are unrelated)::

      tag_j(e) || mask_j(e) = SHA-256( len(D):1 || D || len(sid):2 || sid || len(name_j):2 || name_j || F_j(e) )

  with D = "vfl-psi-v2 oprf tag|mask"; 16 bytes each.
* Zero-shares under the passives' shared key t (A never learns t), e the canonical ID in UTF-8::

      PRF_t(i, e) = HMAC-SHA256(t, len(D'):1 || D' || len(sid):2 || sid || i:4 || len(e):8 || e)[:16]
      R(e)        = the same with D'' = "vfl-psi-v2 total" and i = 0
      s_j(e) = PRF_t(j, e)                       for j < m
      s_m(e) = XOR_{i<m} PRF_t(i, e)  [XOR R(e) in cardinality mode]

  So XOR_j s_j(e) = 0 (or R(e)) when every passive holds e. Any m - 1 of the m shares are independent
  pseudorandom values (the m - 1 PRF outputs determine the last share), so the XOR over any proper,
  non-empty subset of passives is pseudorandom to whoever does not know t.
* What P_j stores in its OKVS under tag_j(y) is ``v_j(y) = s_j(y) XOR mask_j(y)``.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Sequence

import numpy as np

from psi.core.curve25519 import blind_points
from psi.core.hashing import Canonicalization, canonical_id, hash_and_blind

DST_TAG = b"vfl-psi-v2 oprf tag|mask"
DST_SHARE = b"vfl-psi-v2 zero-share"
DST_TOTAL = b"vfl-psi-v2 total"
DST_SEED = b"vfl-psi-v2 okvs seed"
HALF = 16


def _lp(data: bytes, width: int) -> bytes:
    return len(data).to_bytes(width, "big") + data


def _tag_prefix(session_id: str, party: str):
    return hashlib.sha256(_lp(DST_TAG, 1) + _lp(session_id.encode(), 2) + _lp(party.encode(), 2))


def derive(points: bytes, session_id: str, party: str) -> bytes:
    """tag || mask (32 bytes) for each 32-byte OPRF output in ``points``."""
    base = _tag_prefix(session_id, party)
    out = []
    for i in range(0, len(points), 32):
        h = base.copy()
        h.update(points[i:i + 32])
        out.append(h.digest())
    return b"".join(out)


def unblind_and_derive(a_inv: bytes, replies: bytes, session_id: str, party: str) -> bytes:
    """Active party: validate P_j's replies X25519(k_j, X25519(a, H(x))), remove a (giving F_j(x)) and
    return tag_j(x) || mask_j(x) for each. F_j(x) itself is never returned."""
    return derive(blind_points(a_inv, replies, 32, validate=True), session_id, party)


def _share_state(t: bytes, dst: bytes, session_id: str, index: int):
    return hmac.new(t, _lp(dst, 1) + _lp(session_id.encode(), 2) + index.to_bytes(4, "big"), hashlib.sha256)


def _prf(states: list, canonical: bytes) -> bytes:
    """XOR of the 16-byte PRF outputs of ``canonical`` under each prepared HMAC state."""
    acc = 0
    for st in states:
        h = st.copy()
        h.update(_lp(canonical, 8))
        acc ^= int.from_bytes(h.digest()[:HALF], "big")
    return acc.to_bytes(HALF, "big")


def share_indices(index: int, m: int) -> list[int]:
    """Which PRF_t(i, .) passive ``index`` (1-based, of m) XORs into its share."""
    return list(range(1, m)) if index == m else [index]


def zero_shares(canonical_ids: Sequence[str], t: bytes, session_id: str, index: int, m: int,
                with_total: bool) -> bytes:
    """s_index(e) (16 bytes) for every canonical ID; ``with_total`` XORs R(e) in (last passive, cardinality)."""
    states = [_share_state(t, DST_SHARE, session_id, i) for i in share_indices(index, m)]
    if with_total:
        states.append(_share_state(t, DST_TOTAL, session_id, 0))
    return b"".join(_prf(states, c.encode("utf-8")) for c in canonical_ids)


def totals(canonical_ids: Sequence[str], t: bytes, session_id: str) -> bytes:
    """R(e) (16 bytes) for every canonical ID."""
    states = [_share_state(t, DST_TOTAL, session_id, 0)]
    return b"".join(_prf(states, c.encode("utf-8")) for c in canonical_ids)


def passive_entries(ids: Sequence, salt: bytes, canon: Canonicalization, k: bytes, rows: Sequence[int] | None,
                    session_id: str, party: str, t: bytes, index: int, m: int, total_in_share: bool,
                    emit_total: bool) -> bytes:
    """Passive P_index: for each own ID y, ``tag_j(y) || v_j(y)`` (32 bytes), followed by ``R(y)`` (16 more)
    when ``emit_total`` (P_1 in cardinality mode, which compares R values with the active party)."""
    n = len(ids)
    tm = np.frombuffer(derive(hash_and_blind(ids, salt, canon, k, rows, 32), session_id, party),
                       dtype=np.uint8).reshape(n, 32)
    row_list = list(rows) if rows is not None else list(range(n))
    canonical = [canonical_id(v, canon, r) for v, r in zip(ids, row_list)]
    shares = np.frombuffer(zero_shares(canonical, t, session_id, index, m, total_in_share),
                           dtype=np.uint8).reshape(n, HALF)
    parts = [tm[:, :HALF], tm[:, HALF:] ^ shares]
    if emit_total:
        parts.append(np.frombuffer(totals(canonical, t, session_id), dtype=np.uint8).reshape(n, HALF))
    return np.ascontiguousarray(np.hstack(parts)).tobytes() if n else b""


def okvs_seed(session_id: str, party: str, attempt: int) -> bytes:
    """The public 24-byte OKVS hash seed of P_j's table at a given attempt (both sides derive it).

    Only attempt 0 is used except with probability below 2^-40 (:mod:`psi.core.okvs`). The bound holds
    whatever the session id: the keys hashed under the seed are tags under P_j's fresh secret OPRF key,
    pseudorandom to whoever picked the session id, so no party can choose a seed that makes them fail."""
    data = _lp(DST_SEED, 1) + _lp(session_id.encode(), 2) + _lp(party.encode(), 2) + attempt.to_bytes(4, "big")
    return hashlib.sha256(data).digest()[:24]
