"""The crypto core: Elligator 2 against RFC 9380's vectors, hashing, blinding, point validation, set ops, sealing."""
from __future__ import annotations

import ast
import hashlib
import os
import pathlib

import numpy as np
import pytest

from psi.core import curve25519, hashing, setops
from psi.core.curve25519 import A, P, blind_one, blind_points, check_points, elligator2_u, is_on_curve
from psi.core.hashing import Canonicalization, canonical_id, hash_and_blind, hash_to_curve, hash_to_field
from psi.core.seal import EphemeralKey
from psi.errors import InvalidPoint, ProtocolError, PsiInputError

from .conftest import random_ids

# RFC 9380 Appendix J.7.2 (curve25519_XMD:SHA-512_ELL2_NU_): u = hash_to_field(msg), Q = map_to_curve(u),
# P = clear_cofactor(Q) = 8Q. Big-endian hex x (= Montgomery u) coordinates.
RFC9380_NU = [
    ("608d892b641f0328523802a6603427c26e55e6f27e71a91a478148d45b5093cd",
     "51125222da5e763d97f3c10fcc92ea6860b9ccbbd2eb1285728f566721c1e65b",
     "1bb913f0c9daefa0b3375378ffa534bda5526c97391952a7789eb976edfe4d08"),
    ("46f5b22494bfeaa7f232cc8d054be68561af50230234d7d1d63d1d9abeca8da5",
     "7d56d1e08cb0ccb92baf069c18c49bb5a0dcd927eff8dcf75ca921ef7f3e6eeb",
     "7c22950b7d900fa866334262fcaea47a441a578df43b894b4625c9b450f9a026"),
    ("235fe40c443766ce7e18111c33862d66c3b33267efa50d50f9e8e5d252a40aaa",
     "3fbe66b9c9883d79e8407150e7c2a1c8680bee496c62fabe4619a72b3cabe90f",
     "31ad08a8b0deeb2a4d8b0206ca25f567ab4e042746f792f4b7973f3ae2096c52"),
    ("001e92a544463bda9bd04ddbe3d6eed248f82de32f522669efc5ddce95f46f5b",
     "227e0bb89de700385d19ec40e857db6e6a3e634b1c32962f370d26f84ff19683",
     "027877759d155b1997d0d84683a313eb78bdb493271d935b622900459d52ceaa"),
    ("1a68a1af9f663592291af987203393f707305c7bac9c8d63d6a729bdc553dc19",
     "3bcd651ee54d5f7b6013898aab251ee8ecc0688166fce6e9548d38472f6bd196",
     "5fd892c0958d1a75f54c3182a18d286efab784e774d1e017ba2fb252998b5dc1"),
]

# Points of order 1, 2, 4 and 8 (u-coordinates; RFC 7748 §7 / the usual curve25519 blocklist).
LOW_ORDER_U = [0, 1, P - 1,
               325606250916557431795983626356110631294008115727848805560023387167927233504,
               39382357235489614581723060781553021112529911719440698176882885853963445705823]


def x_double(u: int) -> int:
    """u-coordinate of 2Q from u of Q (x-only doubling on the Montgomery curve)."""
    return (u * u - 1) ** 2 * pow(4 * u * (u * u + A * u + 1), -1, P) % P


@pytest.mark.parametrize("u,qx,px", RFC9380_NU)
def test_elligator2_matches_rfc9380_vectors(u, qx, px):
    q = elligator2_u(int(u, 16))
    assert q == int(qx, 16)
    assert x_double(x_double(x_double(q))) == int(px, 16)   # 8Q, what X25519's clamping does to it


def test_elligator2_output_is_always_on_the_curve_never_the_twist():
    rng = np.random.default_rng(1)
    for _ in range(500):
        r = int.from_bytes(rng.bytes(32), "little") % P
        u = elligator2_u(r)
        assert 0 <= u < P and is_on_curve(u)
        assert elligator2_u(P - r) == u            # r and -r map to the same u ...
        assert elligator2_u(pow(2 * r, -1, P)) == u   # ... and so do +-1/(2r): fibres of exactly four
    # r = 0: x1 = -A, g(-A) = -A is not a square, so u = -x1 - A = 0, the point of order 2. A hash equal
    # to 0 mod p has probability 2^-255; hash_and_blind would reject that ID rather than emit a low-order point.
    assert elligator2_u(0) == 0


def test_blinding_commutes_and_hot_loop_matches_reference():
    ids = random_ids(200, seed=2) + ["  Mixed Case  ", "üñíçødé-ID-ßtraße", "x" * 5000]
    salt, a, b = os.urandom(32), curve25519.new_scalar(), curve25519.new_scalar()
    canon = Canonicalization(strip=True, lowercase=True)
    fast = hash_and_blind(ids, salt, canon, a)
    ref = b"".join(hashing.blind_hashes_reference(ids, salt, canon, a))
    assert fast == ref
    ab = blind_points(b, fast, 32)
    ba = blind_points(a, hash_and_blind(ids, salt, canon, b), 32)
    assert ab == ba
    assert blind_points(b, fast, 16) == b"".join(ab[i:i + 16] for i in range(0, len(ab), 32))


def test_both_x25519_backends_compute_the_same_function():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    k = curve25519.new_scalar()
    pts = hash_and_blind(random_ids(20, seed=3), os.urandom(32), Canonicalization(), curve25519.new_scalar())
    key = X25519PrivateKey.from_private_bytes(k)
    openssl = b"".join(key.exchange(X25519PublicKey.from_public_bytes(pts[i:i + 32])) for i in range(0, len(pts), 32))
    assert blind_points(k, pts, 32, validate=False) == openssl


def test_salt_and_canonicalization_separate_hashes():
    assert hash_to_curve("alice", b"s" * 16) != hash_to_curve("alice", b"t" * 16)
    assert hash_to_curve("alice", b"s" * 16) != hash_to_curve("alicf", b"s" * 16)
    # the length prefix separates (salt, id) pairs that concatenate to the same bytes
    assert hash_to_field("bc", b"a" * 16 + b"x") != hash_to_field("xbc", b"a" * 16)
    assert canonical_id("  Alice \n", Canonicalization(strip=True, lowercase=True)) == "alice"
    assert canonical_id("  Alice ", Canonicalization(strip=False, lowercase=False)) == "  Alice "
    assert canonical_id(b"bob", Canonicalization()) == "bob"
    for bad, msg in ((None, "missing"), (12, "is a int"), ("   ", "empty"), (b"\xff", "UTF-8")):
        with pytest.raises(PsiInputError, match=msg):
            canonical_id(bad, Canonicalization(), row=7)


def test_hash_uses_sha512_domain_separated_length_prefixed_encoding():
    salt, ident = b"0123456789abcdef", "patient-42"
    data = ident.encode()
    expected = hashlib.sha512(bytes([len(hashing.DST)]) + hashing.DST + len(salt).to_bytes(2, "big") + salt
                              + len(data).to_bytes(8, "big") + data).digest()
    assert hash_to_field(ident, salt) == int.from_bytes(expected, "little") % P


def _point(u: int) -> bytes:
    return u.to_bytes(32, "little")


def test_point_validation_rejects_malformed_points():
    good = hash_and_blind(random_ids(4, seed=5), os.urandom(32), Canonicalization(), curve25519.new_scalar())
    check_points(np.frombuffer(good, np.uint8).reshape(-1, 32))
    twist = next(u for u in range(2, 100) if not is_on_curve(u))
    cases = {
        "bit 255": bytes(31) + b"\x80",
        "not reduced": _point(P + 3),
        "twist": _point(twist),
    }
    for reason, bad in cases.items():
        with pytest.raises(InvalidPoint) as info:
            blind_points(curve25519.new_scalar(), good[:64] + bad + good[64:])
        assert info.value.index == 2, reason
    for u in LOW_ORDER_U:
        with pytest.raises(InvalidPoint, match="low-order|twist") as info:
            blind_points(curve25519.new_scalar(), good[:32] + _point(u))
        assert info.value.index == 1
        with pytest.raises(InvalidPoint):
            blind_one(curve25519.new_scalar(), _point(u))
    with pytest.raises(InvalidPoint, match="whole number"):
        blind_points(curve25519.new_scalar(), good[:40])


def test_setops_intersection_order_and_duplicates():
    rng = np.random.default_rng(7)
    for _ in range(200):
        a = np.unique(rng.integers(0, 5, size=(rng.integers(0, 25), 2)).astype(np.uint64), axis=0)
        b = np.unique(rng.integers(0, 5, size=(rng.integers(0, 25), 2)).astype(np.uint64), axis=0)
        a, b = a[rng.permutation(len(a))], b[rng.permutation(len(b))]
        common = sorted({tuple(map(int, r)) for r in a} & {tuple(map(int, r)) for r in b})
        got = setops.match(a, b)
        assert [tuple(map(int, a[i])) for i in got] == common
        many = setops.match_many([a, b, a])
        assert len(many) == len(common)
        for row, value in zip(many, common):
            assert tuple(map(int, a[row[0]])) == tuple(map(int, b[row[1]])) == value == tuple(map(int, a[row[2]]))
    v = setops.values_from_bytes(bytes(range(16)) * 3)
    assert setops.values_to_bytes(v) == bytes(range(16)) * 3
    assert setops.duplicate_pairs(v) == [(0, 1), (1, 2)]


def test_sealed_channel_between_two_parties():
    ka, kb = EphemeralKey(), EphemeralKey()
    ab = ka.channel("p1", "p2", kb.public, "s1")
    ba = kb.channel("p2", "p1", ka.public, "s1")
    ct = ab.seal(9, 0, 1, b"k" * 32)
    assert ba.open(9, 0, 1, ct) == b"k" * 32
    with pytest.raises(ProtocolError, match="authentication"):
        ba.open(9, 1, 1, ct)                                  # replayed as another chunk
    with pytest.raises(ProtocolError, match="authentication"):
        kb.channel("p2", "p1", ka.public, "s2").open(9, 0, 1, ct)   # another session
    with pytest.raises(InvalidPoint):
        ka.channel("p1", "p2", bytes(32), "s1")


def test_core_has_no_networking_imports():
    """The crypto core and the protocols must not know about gRPC (layering rule)."""
    root = pathlib.Path(hashing.__file__).resolve().parents[1]
    for folder in ("core", "protocol"):
        for path in (root / folder).glob("*.py"):
            tree = ast.parse(path.read_text())
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
            assert not [m for m in names if m.split(".")[0] in ("grpc", "vfl")], path
