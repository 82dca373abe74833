"""Many modular exponentiations at once on AVX-512 IFMA, or with gmpy2 where that is not available.

Paillier decryption is two exponentiations per ciphertext, c^(p-1) mod p^2 and c^(q-1) mod q^2, and at the
protocol's default (2048-bit keys, 512-row batches) it was about half of a training job's CPU time. GMP computes
each one on its own with 64-bit multiplications. Intel's multi-buffer library (``crypto_mb`` of the Intel
Cryptography Primitives Library, Apache-2.0, on PyPI as ``ipp-crypto``; its Intel compiler runtime is
``intel-cmplr-lib-rt``) runs eight exponentiations side by side in the lanes of AVX-512 IFMA (52-bit
multiply-add) instructions: ``mbx_exp_mb8``, for moduli of 1024, 2048, 3072 and 4096 bits, constant time.
On this project's machine (docs/he.md, section 4) that is about 7x less CPU per exponentiation at 2048 bits.

:func:`powmod_list` is the one entry point: it uses the library when it is installed (the ``fast`` extra), the CPU
has IFMA and the modulus fits one of its sizes, and gmpy2 otherwise; both give the same integers (the tests
compare them). ``VFL_HE_IFMA=0`` turns the library off (for comparisons), ``VFL_HE_IFMA_LIB`` names the directory
that holds ``libcrypto_mb.so.13`` if it is not the environment's ``lib`` folder. Nothing is sent anywhere: the
library computes in this process, on the values it is given.
"""
from __future__ import annotations

import ctypes
import os
import site
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import gmpy2
from gmpy2 import mpz

#: modulus sizes mbx_exp_mb8 supports
MOD_BITS = (1024, 2048, 3072, 4096)
LANES = 8
_LIB_NAME = "libcrypto_mb.so.13"
#: the Intel compiler runtime libcrypto_mb needs, in load order (they have no RUNPATH: loaded by path first)
_RUNTIME = ("libintlc.so.5", "libimf.so", "libsvml.so", "libirng.so")

_U64P = ctypes.POINTER(ctypes.c_uint64)
_ARR8 = _U64P * LANES

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_why_not = ""
_off = 0  # > 0 inside turned_off()


def _candidate_dirs() -> list[Path]:
    named = os.environ.get("VFL_HE_IFMA_LIB")
    if named:
        return [Path(named)]
    roots = [sys.prefix, sys.exec_prefix, getattr(site, "USER_BASE", None) or ""]
    return [Path(r) / "lib" for r in dict.fromkeys(roots) if r]


def _load() -> ctypes.CDLL | None:
    global _lib, _tried, _why_not
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        _lib, _why_not = _open()
        _tried = True
    return _lib


def _open() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get("VFL_HE_IFMA", "").strip().lower() in ("0", "off", "false", "no"):
        return None, "turned off by VFL_HE_IFMA"
    if not sys.platform.startswith("linux"):
        return None, "Linux only"
    folder = next((d for d in _candidate_dirs() if (d / _LIB_NAME).is_file()), None)
    if folder is None:
        return None, "ipp-crypto is not installed (pip install 'vfl[fast]')"
    try:
        for name in _RUNTIME:
            if (folder / name).is_file():
                ctypes.CDLL(str(folder / name))  # local: found by soname, no symbol of theirs goes global
        lib = ctypes.CDLL(str(folder / _LIB_NAME))
        lib.mbx_is_crypto_mb_applicable.restype = ctypes.c_int
        lib.mbx_is_crypto_mb_applicable.argtypes = [ctypes.c_uint64]
        if not lib.mbx_is_crypto_mb_applicable(0):
            return None, "the CPU has no AVX-512 IFMA"
        lib.mbx_exp_BufferSize.restype = ctypes.c_int
        lib.mbx_exp_BufferSize.argtypes = [ctypes.c_int]
        lib.mbx_exp_mb8.restype = ctypes.c_uint32  # mbx_status: 4 bits per lane
        lib.mbx_exp_mb8.argtypes = [_ARR8, _ARR8, _ARR8, ctypes.c_int, _ARR8, ctypes.c_int, _U64P, ctypes.c_int]
    except (OSError, AttributeError) as exc:  # a broken or partial install: gmpy2 does the work
        return None, f"crypto_mb could not be loaded: {exc}"
    return lib, ""


@contextmanager
def turned_off() -> Iterator[None]:
    """gmpy2 for every exponentiation this process starts inside the block (benchmarks and tests compare the two;
    worker processes are not affected)."""
    global _off
    with _lock:
        _off += 1
    try:
        yield
    finally:
        with _lock:
            _off -= 1


def available() -> bool:
    """Whether exponentiations run on IFMA in this process."""
    return _load() is not None


def backend() -> str:
    """'ifma' or 'gmpy2 (<why>)', for benchmark output."""
    return "ifma" if available() else f"gmpy2 ({_why_not})"


def mod_bits_for(modulus: int) -> int | None:
    """The library's modulus size for this modulus, or None (then gmpy2): odd, top 64-bit word in use."""
    bits = int(modulus).bit_length()
    if not modulus & 1:
        return None
    for size in MOD_BITS:
        if size - 64 < bits <= size:
            return size
    return None


def _words(value: int, count: int):
    return (ctypes.c_uint64 * count).from_buffer_copy(int(value).to_bytes(8 * count, "little"))


def powmod_list(bases: Sequence, exponents: int | Sequence[int], modulus) -> list:
    """[b_i^e_i mod m] as mpz, e_i >= 0 (one exponent for all, or one per base).

    On IFMA in groups of eight when available (see the module docstring), otherwise gmpy2; the same integers.
    """
    m = mpz(modulus)
    single = not isinstance(exponents, (list, tuple))
    if not single and len(exponents) != len(bases):
        raise ValueError(f"powmod_list: {len(bases)} bases and {len(exponents)} exponents")
    exps = [mpz(exponents)] * len(bases) if single else [mpz(e) for e in exponents]
    if any(e < 0 for e in exps):
        raise ValueError("powmod_list: negative exponent")
    lib = None if _off else _load()
    size = mod_bits_for(int(m)) if lib is not None else None
    exp_bits = max((int(e).bit_length() for e in exps), default=0)
    if lib is None or size is None or exp_bits == 0 or not bases:
        if single:
            return list(gmpy2.powmod_base_list([mpz(b) for b in bases], exps[0] if exps else mpz(0), m))
        return [gmpy2.powmod(mpz(b), e, m) for b, e in zip(bases, exps)]
    return _ifma_powmods(lib, bases, exps, exp_bits, m, size)


def _ifma_powmods(lib, bases: Sequence, exps: list, exp_bits: int, m, size: int) -> list:
    words = size // 64
    exp_words = (exp_bits + 63) // 64
    modulus = _words(int(m), words)
    mod_p = _ARR8(*[ctypes.cast(modulus, _U64P)] * LANES)
    buffer_len = int(lib.mbx_exp_BufferSize(size))
    scratch = (ctypes.c_uint64 * (buffer_len // 8 + 1))()
    outs = [(ctypes.c_uint64 * words)() for _ in range(LANES)]
    out_p = _ARR8(*[ctypes.cast(o, _U64P) for o in outs])
    one = _words(1, words)
    zero_exp = _words(0, exp_words)
    result: list = []
    for start in range(0, len(bases), LANES):
        chunk = [int(mpz(b) % m) for b in bases[start:start + LANES]]
        chunk_exps = exps[start:start + LANES]
        base_w = [_words(b, words) for b in chunk] + [one] * (LANES - len(chunk))
        exp_w = [_words(int(e), exp_words) for e in chunk_exps] + [zero_exp] * (LANES - len(chunk))
        base_p = _ARR8(*[ctypes.cast(b, _U64P) for b in base_w])
        exp_p = _ARR8(*[ctypes.cast(e, _U64P) for e in exp_w])
        status = lib.mbx_exp_mb8(out_p, base_p, exp_p, exp_bits, mod_p, size, ctypes.cast(scratch, _U64P),
                                 buffer_len)
        if status & ((1 << (4 * len(chunk))) - 1):
            # a lane refused its input (never seen with reduced bases and odd moduli): gmpy2 for this group
            result.extend(gmpy2.powmod(mpz(b), e, m) for b, e in zip(chunk, chunk_exps))
            continue
        result.extend(mpz(int.from_bytes(bytes(outs[k]), "little")) for k in range(len(chunk)))
    return result
