import json

import pytest
from phe import paillier
from phe.util import int_to_base64

from vfl import he
from vfl.errors import CryptoError


def test_generated_keys_are_phe_keys_of_the_requested_size(keys1024, keys2048):
    for (pub, priv), bits in ((keys1024, 1024), (keys2048, 2048)):
        assert isinstance(pub, paillier.PaillierPublicKey) and isinstance(priv, paillier.PaillierPrivateKey)
        assert pub.n.bit_length() == bits and pub.g == pub.n + 1
        assert priv.p * priv.q == pub.n


def test_default_is_2048_and_3072_is_an_option(keys3072):
    assert he.DEFAULT_KEY_BITS == 2048
    pub, priv = keys3072
    assert pub.n.bit_length() == 3072 and priv.p * priv.q == pub.n


def test_unsupported_size_is_refused():
    with pytest.raises(he.KeyFormatError, match="not supported"):
        he.generate_keypair(1000)


def test_json_round_trip_in_pheutil_format(keys1024):
    pub, priv = keys1024
    text = he.private_key_to_json(priv)
    data = json.loads(text)
    assert data["kty"] == "DAJ" and data["pub"]["alg"] == "PAI-GN1" and data["pub"]["n"] == int_to_base64(pub.n)
    loaded = he.private_key_from_json(text)
    assert loaded == priv and loaded.public_key == pub
    assert he.public_key_from_json(he.public_key_to_json(pub)) == pub
    # a phe-generated key written the way pheutil writes it loads too
    ppub, ppriv = paillier.generate_paillier_keypair(n_length=1024)
    jwk = {"kty": "DAJ", "key_ops": ["decrypt"], "p": int_to_base64(ppriv.p), "q": int_to_base64(ppriv.q),
           "pub": {"kty": "DAJ", "alg": "PAI-GN1", "key_ops": ["encrypt"], "n": int_to_base64(ppub.n), "kid": "x"},
           "kid": "y"}
    assert he.private_key_from_json(json.dumps(jwk)) == ppriv


def test_inconsistent_or_malformed_keys_are_refused(keys1024):
    pub, priv = keys1024
    data = json.loads(he.private_key_to_json(priv))
    data["q"] = int_to_base64(priv.q + 2)
    with pytest.raises(he.KeyFormatError, match="p \\* q"):
        he.private_key_from_json(json.dumps(data))
    with pytest.raises(he.KeyFormatError, match="JSON"):
        he.public_key_from_json("{not json")
    with pytest.raises(he.KeyFormatError):
        he.public_key_from_n(pub.n + 1)          # even
    with pytest.raises(he.KeyFormatError, match="bits"):
        he.public_key_from_n(pub.n, bits=2048)
    assert issubclass(he.KeyFormatError, CryptoError)


def test_engine_refuses_a_foreign_private_key(keys1024):
    other_pub, other_priv = he.generate_keypair(1024)
    with pytest.raises(he.KeyMismatchError):
        he.PaillierEngine(keys1024[0], other_priv)
