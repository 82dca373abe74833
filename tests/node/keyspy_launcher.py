"""Test-only node launcher: ``python tests/node/keyspy_launcher.py serve --config node.yaml``.

It runs the ordinary ``vfl`` CLI in this process after patching, here only (production code has no hook):

* ``vfl.protocol.schemes.paillier.new_key``, the key generation every job uses: each Paillier key pair is also
  written (phe JWK JSON with p and q) to ``$VFL_KEYSPY_DIR/keys/``, so a test can decrypt what each party
  received;
* the three homomorphic steps of ``vfl.protocol.interactive`` (``passive_forward``,
  ``passive_weight_gradient``, ``active_input_gradient``): the secret exponents each one applied to the peer's
  ciphertexts are written to ``$VFL_KEYSPY_DIR/exponents/``, keyed by a digest of the first ciphertext it
  returned, so a test can recompute the product *without* fresh randomness and check that what went on the
  wire is not that product (re-randomization); the weight-gradient record also keeps the passive party's
  own gradient share -Q, which that party holds anyway (tests/adversary plays it);
* ``$VFL_KEYSPY_MUTATION``, only to show a checker can fail: ``zero_mask`` zeroes the weight-gradient mask Q;
  ``no_rerandomize`` turns re-randomization into the identity; ``reuse_randomness`` re-randomizes every
  ciphertext with one and the same obfuscator.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import pickle
import sys
import threading
from pathlib import Path

DIR_ENV = "VFL_KEYSPY_DIR"
MUTATION_ENV = "VFL_KEYSPY_MUTATION"
MUTATIONS = ("zero_mask", "no_rerandomize", "reuse_randomness")


def digest(ciphertext) -> str:
    """A short name for one ciphertext (its integer value), used to match spy records with the wire."""
    return hashlib.sha256(str(int(ciphertext)).encode()).hexdigest()[:24]


def install(directory: Path, mutation: str = "") -> None:
    import numpy as np

    from vfl.he import keys as he_keys
    from vfl.protocol.schemes import paillier
    from vfl.protocol import interactive as proto

    keys_dir, exps_dir = directory / "keys", directory / "exponents"
    keys_dir.mkdir(parents=True, exist_ok=True)
    exps_dir.mkdir(parents=True, exist_ok=True)
    counter = itertools.count()
    lock = threading.Lock()

    def write(folder: Path, name: str, data: bytes) -> None:
        with lock:
            path = folder / f"{os.getpid()}-{next(counter)}-{name}"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    real_keygen = paillier.new_key

    def new_key(key_bits, workers):
        ops = real_keygen(key_bits, workers)
        write(keys_dir, "key.json", he_keys.private_key_to_json(ops.private_key).encode())
        return ops
    paillier.new_key = new_key

    def spy(kind: str, real, bases_arg: int, exponents_arg: int):
        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            cts = result[0] if kind == "weight_gradient" else result
            record = {"kind": kind, "bases": [int(b) for b in args[bases_arg]],
                      "exponents": np.asarray(args[exponents_arg], dtype=np.int64)}
            if kind == "weight_gradient":  # the passive party's own gradient share -Q (it drew Q itself)
                record["share"] = result[1]
            write(exps_dir, f"{kind}-{digest(cts[0])}.pkl", pickle.dumps(record))
            return result
        return wrapper

    proto.passive_forward = spy("forward", proto.passive_forward, 1, 2)
    proto.passive_weight_gradient = spy("weight_gradient", proto.passive_weight_gradient, 1, 2)
    proto.active_input_gradient = spy("input_gradient", proto.active_input_gradient, 1, 2)

    if mutation == "zero_mask":
        real_uniform = proto._uniform_ints

        def uniform_ints(shape, bits, signed):
            if sys._getframe(1).f_code.co_name == "passive_weight_gradient":
                out = np.empty(shape, dtype=object)
                out[...] = 0
                return out
            return real_uniform(shape, bits, signed)
        proto._uniform_ints = uniform_ints
    elif mutation == "no_rerandomize":
        from vfl.he.engine import PaillierEngine
        PaillierEngine.rerandomize = lambda self, ciphertexts: list(ciphertexts)
    elif mutation == "reuse_randomness":
        from vfl.he.engine import PaillierEngine

        def rerandomize_with_one_obfuscator(self, ciphertexts):
            if not hasattr(self, "_keyspy_rho"):
                self._keyspy_rho = self.obfuscators(1)[0]
            return [c * self._keyspy_rho % self.nsquare for c in ciphertexts]
        PaillierEngine.rerandomize = rerandomize_with_one_obfuscator
    elif mutation:
        raise SystemExit(f"{MUTATION_ENV}={mutation!r}: unknown mutation (use one of {MUTATIONS})")


def main() -> int:
    directory = os.environ.get(DIR_ENV)
    if not directory:
        raise SystemExit(f"{DIR_ENV} is not set: this launcher is for tests only")
    install(Path(directory), os.environ.get(MUTATION_ENV, ""))
    from vfl.cli.main import main as vfl_main
    return vfl_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
