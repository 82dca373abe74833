"""Encryption at rest of a node's job files: AES-256-GCM under the node's at-rest key, in one place.

A node registers its jobs_dir with its keys (`protect(jobs_dir, keys)`, vfl/node/at_rest.py does it from the node
config). From then on the one atomic writer (vfl/data/atomic.py) seals every file it writes under that folder,
except the job's metadata that holds neither weights nor IDs (`PLAIN_NAMES`: status, spec, result, reports, audit,
lineage, plots), and `read_bytes` / `read_text` open a sealed file wherever it is. The runtimes never do crypto:
they write and read through these two.

A sealed file is

    header = MAGIC (8) | key id (8) | nonce prefix (7, from the OS generator) | segment size (4, big-endian)
    body   = AES-GCM(key, nonce = prefix | segment number (4) | last (1), segment, aad = header) per segment

The plaintext is cut into segments of `SEGMENT` bytes, so a file of any size seals; the last segment carries the
flag 1, so a file cut after a whole segment does not authenticate. The key id (the first 8 bytes of
HMAC-SHA256(key, "vfl at-rest key id")) names the key without revealing it: a reader picks the key by it, a
rotation (`reseal_tree`) re-encrypts what another key sealed, and a node without the key says which one it lacks.
A changed byte anywhere fails the tag: the error says the file was changed, never returns garbage.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from vfl.errors import ConfigError, SealedFileChanged, SealedFileError

MAGIC = b"VFLSEAL\x01"
KEY_BYTES = 32                       # AES-256
KEY_ID_BYTES = 8
NONCE_PREFIX_BYTES = 7
TAG_BYTES = 16
SEGMENT = 4 << 20                    # plaintext bytes per GCM segment
HEADER = struct.Struct(f">{len(MAGIC)}s{KEY_ID_BYTES}s{NONCE_PREFIX_BYTES}sI")

#: files of a job directory that stay readable without the key: state and reports that hold no weights and no IDs
#: (the job's status, its spec, its result's metrics, the privacy and data-audit reports, its lineage and retention
#: records, the PSI claim, the wire ledger's counts). Everything else a job writes is sealed: checkpoints, model
#: parts and their schema, aligned IDs and rows, predictions, recorded gradients, and any file a future version adds.
PLAIN_NAMES = frozenset({"status.json", "job.yaml", "accepted-spec.yaml", "result.json", "privacy_report.json",
                         "privacy_report.md", "audit.json", "lineage.json", "retention.json", "psi-session.json",
                         "wire-ledger.jsonl"})
PLAIN_SUFFIXES = (".png",)           # learning curves and ROC plots


def key_id(key: bytes) -> str:
    """The key's public name (16 hex digits): derived from the key, it reveals nothing of it."""
    return hmac.new(key, b"vfl at-rest key id", hashlib.sha256).digest()[:KEY_ID_BYTES].hex()


@dataclass(frozen=True)
class AtRestKeys:
    """The key new files are sealed with, and the keys of a rotation in progress (open only)."""
    current: bytes
    previous: tuple[bytes, ...] = ()

    def __post_init__(self):
        for key in (self.current, *self.previous):
            if len(key) != KEY_BYTES:
                raise ValueError(f"an at-rest key has {KEY_BYTES} bytes, got {len(key)}")

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def key(self, kid: str) -> bytes | None:
        for key in (self.current, *self.previous):
            if key_id(key) == kid:
                return key
        return None

    def ids(self) -> list[str]:
        return [key_id(k) for k in (self.current, *self.previous)]

    def seal(self, plaintext: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        header = HEADER.pack(MAGIC, bytes.fromhex(self.current_id), os.urandom(NONCE_PREFIX_BYTES), SEGMENT)
        prefix = header[len(MAGIC) + KEY_ID_BYTES:len(MAGIC) + KEY_ID_BYTES + NONCE_PREFIX_BYTES]
        aead = AESGCM(self.current)
        view = memoryview(plaintext)
        starts = range(0, len(plaintext), SEGMENT) if plaintext else [0]
        last = len(starts) - 1
        out = [header]
        for i, start in enumerate(starts):
            out.append(aead.encrypt(_nonce(prefix, i, i == last), bytes(view[start:start + SEGMENT]), header))
        return b"".join(out)

    def open(self, data: bytes, name: str) -> bytes:
        """The plaintext of sealed `data`; SealedFileError naming `name` if the key is missing or data changed."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        kid, prefix, segment = parse_header(data, name)
        key = self.key(kid)
        if key is None:
            raise SealedFileError(missing_key_message(name, kid, self.ids()))
        header, body = data[:HEADER.size], memoryview(data)[HEADER.size:]
        step = segment + TAG_BYTES
        starts = range(0, len(body), step) if len(body) else [0]
        last = len(starts) - 1
        aead = AESGCM(key)
        out = []
        try:
            for i, start in enumerate(starts):
                out.append(aead.decrypt(_nonce(prefix, i, i == last), bytes(body[start:start + step]), header))
        except InvalidTag:
            raise SealedFileChanged(f"{name} does not authenticate under at-rest key {kid}: the file was changed or "
                                  "cut after it was written") from None
        return b"".join(out)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I?", index, last)


def is_sealed(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC


def parse_header(data: bytes, name: str) -> tuple[str, bytes, int]:
    """(key id, nonce prefix, segment size) of a sealed file."""
    if len(data) < HEADER.size + TAG_BYTES:
        raise SealedFileChanged(f"{name} is cut short: it ends inside its encryption header")
    magic, kid, prefix, segment = HEADER.unpack_from(data)
    if magic != MAGIC or segment == 0:
        raise SealedFileError(f"{name}: not a file sealed by this version of vfl")
    return kid.hex(), prefix, segment


def missing_key_message(name: str, kid: str, have: list[str]) -> str:
    return (f"{name} is encrypted at rest under key {kid}, which this node does not have (it has "
            f"{', '.join(have) or 'no key'}): the key file was lost or replaced, or the key was rotated out. "
            "Configure that key as at_rest.key or in at_rest.previous_keys; without it the file cannot be read")


# ------------------------------------------------------------------------------------------ key files

def new_key_file(path: Path) -> str:
    """Write a new key (32 bytes from the OS generator, hex) to `path`, mode 0600, never over an existing file;
    returns its id."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
        out.flush()
        os.fsync(out.fileno())
    return key_id(key)


def load_key_file(path: Path, where: str) -> bytes:
    """The key in `path` (64 hex digits, as `vfl at-rest new-key` writes it); ConfigError naming `where`."""
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"{where}: the at-rest key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the at-rest key file {path}: {exc.strerror or exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where}: {path} is not an at-rest key (expected {2 * KEY_BYTES} hex digits, as "
                          "`vfl at-rest new-key` writes)")
    return key


# ------------------------------------------------------------------------------------------ where sealing applies

_LOCK = threading.Lock()
_ROOTS: dict[Path, tuple[AtRestKeys, bool]] = {}


def protect(root: Path, keys: AtRestKeys, seal: bool = True) -> None:
    """Open sealed files under `root` with `keys` (in this process), and with `seal`, seal what is written there
    from now on. Without it (encryption turned off) files already sealed stay readable."""
    with _LOCK:
        _ROOTS[Path(root).resolve()] = (keys, seal)


def unprotect(root: Path) -> None:
    with _LOCK:
        _ROOTS.pop(Path(root).resolve(), None)


def _keys_for(path: Path) -> tuple[Path, AtRestKeys, bool] | None:
    resolved = Path(path).resolve()
    with _LOCK:
        for root, (keys, seal) in _ROOTS.items():
            if resolved == root or root in resolved.parents:
                return root, keys, seal
    return None


def plain_name(path: Path) -> bool:
    """Whether a job file with this name stays plaintext (`PLAIN_NAMES`)."""
    name = Path(path).name
    return name in PLAIN_NAMES or name.endswith(PLAIN_SUFFIXES)


def sealing_keys(path: Path) -> AtRestKeys | None:
    """The keys `path` is sealed with when written, or None: outside every protected root, or a plain name."""
    found = _keys_for(path)
    if found is None or not found[2] or plain_name(path):
        return None
    return found[1]


def display_name(path: Path) -> str:
    """`path` relative to its protected root (the job id and file), for messages that may reach a peer."""
    found = _keys_for(path)
    resolved = Path(path).resolve()
    return resolved.relative_to(found[0]).as_posix() if found else Path(path).name


def seal_for(path: Path, data: bytes) -> bytes:
    """`data` as it is stored at `path`: sealed under the root's current key where sealing applies."""
    keys = sealing_keys(path)
    return keys.seal(data) if keys is not None else data


def unseal(data: bytes, path: Path) -> bytes:
    """The plaintext of `data` read from `path`: as is if it is not sealed."""
    if not is_sealed(data):
        return data
    name = display_name(path)
    found = _keys_for(path)
    kid = parse_header(data, name)[0]
    if found is not None and found[1].key(kid) is not None:
        return found[1].open(data, name)
    with _LOCK:
        others = [keys for keys, _ in _ROOTS.values() if keys.key(kid) is not None]
    if others:   # a job directory copied out of its jobs_dir, read with the node's keys
        return others[0].open(data, name)
    raise SealedFileError(missing_key_message(name, kid, found[1].ids() if found else []))


def read_bytes(path: Path) -> bytes:
    """A job file's content, opened if it is sealed (FileNotFoundError and OSError as `Path.read_bytes`)."""
    return unseal(Path(path).read_bytes(), Path(path))


def read_text(path: Path) -> str:
    return read_bytes(path).decode("utf-8")


def content_sha256(path: Path) -> str:
    """SHA-256 of a file's content: of the plaintext for a sealed file, so a key rotation keeps every hash."""
    return hashlib.sha256(read_bytes(path)).hexdigest()


def file_is_sealed(path: Path) -> bool:
    with open(path, "rb") as handle:
        return is_sealed(handle.read(len(MAGIC)))


# ------------------------------------------------------------------------------------------ rotation

@dataclass
class ResealReport:
    resealed: list[str]          # files sealed under another key, now under the current one
    sealed: list[str]            # plaintext files that sealing applies to, now sealed
    unknown: list[str]           # files sealed under a key `keys` lacks: left as they are (unreadable here)
    current: int                 # files already under the current key
    plain: int                   # files that stay plaintext (PLAIN_NAMES)


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(HEADER.size + TAG_BYTES)


def reseal_tree(root: Path, keys: AtRestKeys, write, dry_run: bool = False) -> ResealReport:
    """Bring every file under `root` to `keys.current`: re-encrypt files another known key sealed, seal plaintext
    files that sealing applies to. `write(path, stored_bytes)` replaces a file as given (the atomic writer's
    `atomic_write_stored`). Files under a key `keys` lacks are listed in `unknown` and left alone."""
    root = Path(root)
    report = ResealReport([], [], [], 0, 0)
    if not root.is_dir():
        return report
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        rel = path.relative_to(root).as_posix()
        head = _head(path)
        if is_sealed(head):
            kid = parse_header(head, rel)[0]
            if kid == keys.current_id:
                report.current += 1
                continue
            if keys.key(kid) is None:
                report.unknown.append(rel)
                continue
            report.resealed.append(rel)
        elif plain_name(path):
            report.plain += 1
            continue
        else:
            report.sealed.append(rel)
        if not dry_run:
            data = path.read_bytes()
            plaintext = keys.open(data, rel) if is_sealed(data) else data
            write(path, keys.seal(plaintext))
    return report
