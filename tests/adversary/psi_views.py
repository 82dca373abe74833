"""What one PSI role holds, as a clean object, plus the material every adversary in test_psi_roles.py shares.

:func:`run_session` runs a session in process (``psi.run_in_process`` with ``record=``), keeps every
message each party sends, and takes each party's own secrets from its protocol object (captured when
the party's loop starts). :class:`View` then holds exactly one role's material:

* its own input IDs (in its row order) and its own output (``PsiResult``: what the docs say it learns);
* the session parameters as that role saw them: the hello (session id, salt, mode, canonicalization,
  party list, chunk size, job metadata);
* its own secrets: 2-party the blinding scalar and its send order; N-party active a, a_inv, its send
  order (and the cardinality-exchange scalar); N-party passive k_j, t, its ephemeral private key, its
  send order (and, P1 in cardinality mode, the exchange scalar);
* every message it received (sender, message) and sent (recipient, message), in order.

Nothing else: no other party's secrets or IDs, and no ground truth (the tests keep that to judge).

``candidate_secrets`` is the adversary's dictionary of secrets "derived from public session material":
hashes of the session id, the salt, party names and job metadata in natural combinations. The weakened
protocols in the tests derive their secrets with one of these formulas (``derived``), so an adversary that
tries the dictionary recovers them; against fresh OS randomness it must find nothing.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Optional
from unittest import mock

import numpy as np

import psi
from psi.core import curve25519
from psi.core.curve25519 import ORDER, clamp
from psi.core.hashing import Canonicalization, canonical_id
from psi.protocol import base
from psi.protocol.messages import Chunk, Hello, Mode, Sealed, Stage
from psi.protocol.multi_party import MultiActive, MultiPassive
from psi.protocol.two_party import TwoPartyRole


# ----------------------------------------------------------------------------- the view
@dataclass
class View:
    me: str
    role: str                                   # "active" or "passive"
    ids: list                                   # own input IDs, row order
    hello: Hello                                # session parameters as this role saw them
    secrets: dict                               # this role's own secrets only
    received: list = field(default_factory=list)   # (sender, message)
    sent: list = field(default_factory=list)       # (recipient, message)
    output: Optional[psi.PsiResult] = None       # what the protocol tells this role

    # ---- session parameters
    @property
    def sid(self) -> str:
        return self.hello.session_id

    @property
    def salt(self) -> bytes:
        return self.hello.salt

    @property
    def mode(self) -> Mode:
        return self.hello.mode

    @property
    def canon(self) -> Canonicalization:
        return Canonicalization(self.hello.strip, self.hello.lowercase)

    @property
    def active(self) -> str:
        return self.hello.parties[0]

    @property
    def passives(self) -> list[str]:
        return list(self.hello.parties[1:])

    def canonical(self, values) -> list[str]:
        return [canonical_id(v, self.canon) for v in values]

    # ---- messages
    def got(self, kind, sender: Optional[str] = None) -> list:
        return [m for s, m in self.received if isinstance(m, kind) and sender in (None, s)]

    def chunks(self, stage: Stage, *, sender: Optional[str] = None, recipient: Optional[str] = None,
               sent: bool = False) -> bytes:
        """The concatenated data of the chunks of one stage this role received (or sent), in order."""
        source = self.sent if sent else self.received
        who = recipient if sent else sender
        return b"".join(m.data for p, m in source
                        if isinstance(m, Chunk) and m.stage == stage and who in (None, p))


def items(data: bytes, width: int) -> list[bytes]:
    return [data[i:i + width] for i in range(0, len(data), width)]


# ----------------------------------------------------------------------------- running a session
@dataclass
class Session:
    views: dict[str, View]
    results: dict[str, psi.PsiResult]
    error: Optional[BaseException] = None       # set when the session aborted (allow_error=True)


def _two_party_send_order(party, ids: list, sent: list) -> np.ndarray:
    """A 2-party role's own send order (position i: the row of the i-th point it sent), as the role knows it:
    its points are H(id)^scalar of its own IDs, and it kept every point it sent. (The protocol builds the order on
    disk and does not keep it in memory.)"""
    from psi.core.hashing import hash_and_blind
    points = b"".join(m.data for _, m in sent if isinstance(m, Chunk) and m.stage == Stage.BLINDED)
    mine = hash_and_blind(ids, party.hello.salt, party.canon, party.scalar, None, 32) if ids else b""
    row_of = {mine[32 * r:32 * r + 32]: r for r in range(len(ids))}
    return np.array([row_of[points[i:i + 32]] for i in range(0, len(points), 32)], dtype=np.int64)


def _secrets(party, ids: list, sent: list) -> dict:
    """One party's own secrets, read from its protocol object after the session. A party whose session
    aborted before it drew them (an invalid input is refused before the first point) holds none."""
    if isinstance(party, TwoPartyRole):
        if not hasattr(party, "scalar"):
            return {}
        return {"order": _two_party_send_order(party, ids, sent), "scalar": party.scalar}
    if not hasattr(party, "order"):
        return {}
    out: dict = {"order": np.array(party.order, copy=True)}
    if isinstance(party, MultiActive):
        out["a"], out["a_inv"] = party.a, party.a_inv
        if party.mode == Mode.CARDINALITY:
            out["exchange_scalar"] = party.exchange.scalar
    elif isinstance(party, MultiPassive):
        out["k"], out["t"] = party.k, party.t
        out["ephemeral_private"] = party.eph._private.private_bytes_raw()
        if party.exchange is not None:
            out["exchange_scalar"] = party.exchange.scalar
    else:  # pragma: no cover
        raise TypeError(type(party))
    return out


def run_session(lists: dict, active: str, config: psi.PsiConfig, engine=None, allow_error: bool = False) -> Session:
    """Run every party in process; return each role's :class:`View` and the results. With
    ``allow_error`` an aborted session still yields every view (what each role received before the
    abort; ``output`` None) and the error."""
    records: list[tuple[str, str, object]] = []
    parties: dict[str, base.Party] = {}
    lock = threading.Lock()
    original = base.Party.run

    def run(self):
        with lock:
            parties[self.me] = self
        return original(self)

    error = None
    results: dict = {}
    with mock.patch.object(base.Party, "run", run):
        try:
            results = psi.run_in_process(lists, active, config, engine=engine,
                                         record=lambda party, peer, msg: records.append((party, peer, msg)))
        except psi.PsiError as exc:
            if not allow_error:
                raise
            error = exc
    views = {}
    for name, ids in lists.items():
        received = [(sender, msg) for sender, peer, msg in records if peer == name]
        sent = [(peer, msg) for sender, peer, msg in records if sender == name]
        own_hellos = sent if name == active else received
        hello = next(m for _, m in own_hellos if isinstance(m, Hello))
        views[name] = View(me=name, role="active" if name == active else "passive", ids=list(ids), hello=hello,
                           secrets=_secrets(parties[name], list(ids), sent), received=received, sent=sent,
                           output=results.get(name))
    return Session(views, results, error)


# ----------------------------------------------------------------------------- public-material dictionary
def derived(*parts: str | bytes) -> bytes:
    """sha256 of the concatenation: how the weakened protocols derive 'secrets' from public material."""
    return hashlib.sha256(b"".join(p.encode() if isinstance(p, str) else p for p in parts)).digest()


def public_strings(view: View) -> list[bytes]:
    sid, salt = view.sid.encode(), view.salt
    names = [p.encode() for p in view.hello.parties]
    meta = [v.encode() for v in view.hello.metadata.values()]
    out = [sid, salt, sid + salt, salt + sid, b""] + names + meta
    out += [sid + n for n in names] + [salt + n for n in names] + [sid + m for m in meta]
    return out


def candidate_secrets(view: View) -> list[bytes]:
    """32-byte values an adversary tries as somebody else's scalar or key: hashes of public session
    material, trivial constants, and this role's own secrets (a party reusing another's scalar)."""
    out = [derived(s) for s in public_strings(view)] + [bytes(32), b"\x01" * 32, b"\xff" * 32]
    out += [v for v in view.secrets.values() if isinstance(v, bytes) and len(v) == 32]
    return list(dict.fromkeys(out))


def pair_from_seed(seed: bytes) -> tuple[bytes, bytes]:
    """A deterministic clamped inverse pair (a, a_inv) from a seed: production's construction
    (psi.core.curve25519.inverse_scalar_pair) with sha256(seed || counter) in place of os.urandom."""
    for counter in range(256):
        inv = clamp(hashlib.sha256(seed + counter.to_bytes(4, "big")).digest())
        a0 = pow(int.from_bytes(inv, "little"), -1, ORDER)
        for j in range(16):
            a = a0 + j * ORDER
            if a >= 2**255:
                break
            if a >= 2**254 and a % 8 == 0:
                return a.to_bytes(32, "little"), inv
    raise AssertionError("no pair")  # pragma: no cover


def candidate_scalars(view: View) -> list[bytes]:
    """candidate_secrets, each also read as the seed of an inverse pair (the active N-party scalar a)."""
    seeds = candidate_secrets(view)
    return list(dict.fromkeys(seeds + [pair_from_seed(s)[0] for s in seeds]))


# ----------------------------------------------------------------------------- weakening helpers
def thread_party() -> str:
    """The party whose protocol thread is running (run_in_process names them psi-<party>)."""
    name = threading.current_thread().name
    return name[4:] if name.startswith("psi-") else ""


def weak_new_scalar(monkeypatch, session_id: str, weak_parties: set[str]) -> None:
    """Weakened protocol: the parties in ``weak_parties`` 'draw' their X25519 scalars as
    sha256(session id || party name) (public material); the others keep OS randomness."""
    real = curve25519.new_scalar

    def new_scalar():
        me = thread_party()
        return derived(session_id, me) if me in weak_parties else real()

    monkeypatch.setattr(curve25519, "new_scalar", new_scalar)


def weak_inverse_pair(monkeypatch, session_id: str, party: str) -> None:
    """Weakened protocol: the active N-party pair (a, a_inv) is derived from sha256(session id || name)."""
    real = curve25519.inverse_scalar_pair

    def inverse_scalar_pair():
        return pair_from_seed(derived(session_id, party)) if thread_party() == party else real()

    monkeypatch.setattr(curve25519, "inverse_scalar_pair", inverse_scalar_pair)


def sealed_items(view: View) -> list[Sealed]:
    return [m for _, m in view.received + view.sent if isinstance(m, Sealed)]
