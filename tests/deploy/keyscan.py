"""Search files for Paillier private key material: p, q and what is derived from them, in the usual encodings."""
from __future__ import annotations

import base64
import gzip
import io
import zipfile
from math import lcm
from pathlib import Path


def _int_bytes(x: int) -> bytes:
    return x.to_bytes((x.bit_length() + 7) // 8, "big")


def private_values(p: int, q: int) -> dict[str, int]:
    """The private key's numbers: p, q, their squares, lambda, phi, mu (g = n + 1), and phe's CRT constants."""
    n = p * q
    lam = lcm(p - 1, q - 1)
    phi = (p - 1) * (q - 1)

    def h(prime: int) -> int:   # phe's hp / hq: L_prime(g^(prime-1) mod prime^2)^-1 mod prime
        return pow((pow(n + 1, prime - 1, prime * prime) - 1) // prime, -1, prime)

    return {"p": p, "q": q, "p^2": p * p, "q^2": q * q, "lambda": lam, "phi": phi, "mu": pow(lam, -1, n),
            "mu(phi)": pow(phi, -1, n), "hp": h(p), "hq": h(q), "p^-1 mod q": pow(p, -1, q)}


def needles(p: int, q: int) -> dict[str, bytes]:
    """label -> bytes to look for. Text forms are matched against the lower-cased file."""
    out: dict[str, bytes] = {}
    for name, x in private_values(p, q).items():
        raw = _int_bytes(x)
        b64 = base64.b64encode(raw).rstrip(b"=")
        out[f"{name} decimal"] = str(x).encode()
        out[f"{name} hex"] = format(x, "x").encode()
        out[f"{name} big-endian bytes"] = raw
        out[f"{name} little-endian bytes"] = raw[::-1]
        out[f"{name} base64"] = b64[: len(b64) - len(b64) % 4]   # whole 4-character groups match wherever it starts
        out[f"{name} base64url"] = base64.urlsafe_b64encode(raw).rstrip(b"=")[: len(b64) - len(b64) % 4]
    out["private key JSON (key_ops decrypt)"] = b'"key_ops": ["decrypt"]'
    return out


def scan(roots: list[Path], keys: list[tuple[int, int]], at_rest: list | None = None) -> tuple[int, list[str]]:
    """(number of files read, findings as 'path: label'). Files sealed at rest (vfl/data/sealed.py) are searched as
    stored and opened with `at_rest` (the nodes' AtRestKeys): a sealed file whose key is not given fails the scan."""
    wanted = [(label, needle) for p, q in keys for label, needle in needles(p, q).items()]
    files = 0
    found: list[str] = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            files += 1
            for where, data in _contents(path, at_rest or []):
                lowered = data.lower()
                for label, needle in wanted:
                    text_form = "bytes" not in label
                    if needle in data or (text_form and needle.lower() in lowered):
                        found.append(f"{where}: {label}")
    return files, found


def _contents(path: Path, at_rest: list):
    """The file's bytes, its plaintext if it is sealed at rest, and each member's decompressed bytes if it is a zip
    (torch.save, np.savez_compressed) or gzip file."""
    from vfl.data import sealed
    data = path.read_bytes()
    yield str(path), data
    if sealed.is_sealed(data):
        kid = sealed.parse_header(data, str(path))[0]
        keys = next((k for k in at_rest if k.key(kid) is not None), None)
        assert keys is not None, f"{path}: sealed at rest under key {kid}, which the scan was not given"
        data = keys.open(data, str(path))
        yield f"{path}!unsealed", data
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for member in z.namelist():
                yield f"{path}!{member}", z.read(member)
    elif data[:2] == b"\x1f\x8b":
        yield f"{path}!gunzip", gzip.decompress(data)
