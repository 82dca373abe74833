"""vfl.he -- fast packed Paillier on phe keys and gmpy2 (no networking). See docs/he.md.

  keys        generate_keypair, public/private key JSON (pheutil's JWK format), public_key_from_n
  packing     the one codec: fixed point, SlotLayout, rows <-> packed plaintexts with a checksum slot
  engine      PaillierEngine: encrypt_ints, decrypt_ints (CRT), add, add_plain, sub, negate, mul_scalar,
              multiexp, rerandomize; new_private_ops / new_public_ops
  batch       Ciphertexts / Fresh batches that carry their key; KeyedEngine; to_wire (fresh only) / from_wire
  multiexp    comb (fixed-base windows) and Pippenger (buckets) multi-exponentiation, picked by a cost model
  randomness  DJN short-exponent fixed-base randomness (own key), peer DJN with the owner's published base
              (peer's key, statistical), uniform r^n (peer's key, no base), background pool
  wire        ciphertexts_to_bytes / ciphertexts_from_bytes (fixed width, validated)
  parallel    serial / GIL-releasing threads / spawn process pool
"""
from vfl.he.batch import Ciphertexts, Fresh, KeyedEngine, from_wire, to_wire
from vfl.he.engine import PaillierEngine, new_private_ops, new_public_ops
from vfl.he.errors import CryptoError, KeyFormatError, KeyMismatchError, LayoutError, MalformedCiphertextError, SlotOverflowError
from vfl.he.keys import (ALLOWED_KEY_BITS, DEFAULT_KEY_BITS, check_modulus, generate_keypair, private_key_from_json,
                         private_key_to_json, public_key_from_json, public_key_from_n, public_key_to_json)
from vfl.he.multiexp import batch_invert
from vfl.he.parallel import get_executor
from vfl.he.randomness import DjnRandomness, FullRandomness, PeerDjnRandomness, RandomnessPool, peer_djn_slack_bits
from vfl.he.wire import ciphertext_width, ciphertexts_from_bytes, ciphertexts_to_bytes

__all__ = [
    "ALLOWED_KEY_BITS", "DEFAULT_KEY_BITS", "Ciphertexts", "CryptoError", "DjnRandomness", "Fresh", "FullRandomness",
    "KeyFormatError", "KeyMismatchError", "KeyedEngine", "LayoutError", "MalformedCiphertextError", "PaillierEngine",
    "PeerDjnRandomness", "RandomnessPool", "SlotOverflowError",
    "batch_invert", "check_modulus", "ciphertext_width", "ciphertexts_from_bytes", "ciphertexts_to_bytes",
    "from_wire", "generate_keypair", "get_executor", "new_private_ops", "new_public_ops", "peer_djn_slack_bits",
    "private_key_from_json", "private_key_to_json", "public_key_from_json", "public_key_from_n",
    "public_key_to_json", "to_wire",
]
