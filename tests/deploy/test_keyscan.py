"""The key scanner the loopback test relies on finds a private key however a careless change might write it."""
from __future__ import annotations

import base64
import json
import pickle

import numpy as np
import pytest
import torch
from phe import paillier

from .keyscan import needles, private_values, scan


@pytest.fixture(scope="module")
def key():
    _, private = paillier.generate_paillier_keypair(n_length=512)   # small: only the encodings matter here
    return private


def writers(key):
    p, q = int(key.p), int(key.q)
    yield "phe key pickled", lambda path: path.write_bytes(pickle.dumps(key))
    yield "JWK", lambda path: path.write_text(json.dumps({"kty": "DAJ", "key_ops": ["decrypt"]}))
    yield "JWK p", lambda path: path.write_text(json.dumps(
        {"p": base64.urlsafe_b64encode(p.to_bytes(32, "big")).decode().rstrip("=")}))
    yield "torch checkpoint", lambda path: torch.save({"epoch": 1, "q": q}, path)
    yield "numpy object array", lambda path: np.save(path, np.array([p], dtype=object), allow_pickle=True)
    yield "hex in a log", lambda path: path.write_text(f"debug: lambda=0x{private_values(p, q)['lambda']:X}\n")
    yield "decimal in YAML", lambda path: path.write_text(f"mu: {private_values(p, q)['mu']}\n")
    yield "raw bytes", lambda path: path.write_bytes(b"\0" * 7 + p.to_bytes(32, "big") + b"\1")
    yield "little-endian limbs", lambda path: path.write_bytes(q.to_bytes(32, "little"))
    yield "compressed npz", lambda path: np.savez_compressed(path, k=np.frombuffer(p.to_bytes(32, "big"), np.uint8))


@pytest.fixture(scope="module")
def other_key():
    return paillier.generate_paillier_keypair(n_length=512)[1]


def test_scanner_finds_every_planted_form(key, other_key, tmp_path):
    keys = [(int(key.p), int(key.q))]
    for label, write in writers(key):
        root = tmp_path / label.replace(" ", "-")
        (root / "jobs" / "j1").mkdir(parents=True)
        write(root / "jobs" / "j1" / "artifact")
        files, found = scan([root], keys)
        assert files == 1 and found, f"{label}: not found"
        if label != "JWK":   # the JSON marker belongs to no particular key
            assert not scan([root], [(int(other_key.p), int(other_key.q))])[1], f"{label}: found a key that is not there"


def test_scanner_is_quiet_on_public_material(key, tmp_path):
    """The public modulus and unrelated numbers are not reported."""
    n = int(key.public_key.n)
    (tmp_path / "public.json").write_text(json.dumps({"n": str(n), "hex": format(n, "x"), "other": 12345}))
    (tmp_path / "public.bin").write_bytes(n.to_bytes(64, "big") + bytes(range(256)))
    files, found = scan([tmp_path], [(int(key.p), int(key.q))])
    assert files == 2 and not found, found


def test_private_values_are_consistent(key):
    values = private_values(int(key.p), int(key.q))
    n = int(key.public_key.n)
    assert values["p"] * values["q"] == n
    assert (values["lambda"] * values["mu"]) % n == 1
    assert values["hp"] == int(key.hp) and values["hq"] == int(key.hq)   # phe's own CRT constants
    assert len(needles(int(key.p), int(key.q))) > 40


def test_scanner_opens_files_sealed_at_rest(key, tmp_path):
    """A key written into a job file that the node encrypts at rest is still found (the scan opens it with the node's
    at-rest key), and a sealed file whose key the scan lacks fails the scan instead of passing unread."""
    import os

    from vfl.data import sealed
    at_rest = sealed.AtRestKeys(os.urandom(32))
    plain = tmp_path / "plain.pt"
    torch.save({"epoch": 1, "q": int(key.q)}, plain)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "epoch-0001.pt").write_bytes(at_rest.seal(plain.read_bytes()))
    plain.unlink()
    keys = [(int(key.p), int(key.q))]
    files, found = scan([tmp_path], keys, [at_rest])
    assert files == 1 and any("!unsealed" in f or "!" in f for f in found), found
    with pytest.raises(AssertionError, match="sealed at rest under key"):
        scan([tmp_path], keys)
