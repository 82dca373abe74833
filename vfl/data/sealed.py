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

Files a job writes as streams (the job's copy of its table in `table/`, the aligned columns in `aligned/`,
`aligned_rows.npy`, `aligned_ids.json`, the streamed `predictions.csv`) are sealed in the same format as they are
written (`StreamSealer`: the header, then each segment as it fills, the last one flagged at close), with segments of
`STREAM_SEGMENT` bytes, and are read back by byte range (`SealedReader`: it authenticates the last segment when it
opens, so a cut file fails at once, then decrypts only the segments a read covers). `read_bytes`, `vfl at-rest cat`
and a rotation read them like any sealed file.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from vfl.errors import ConfigError, SealedFileChanged, SealedFileError

MAGIC = b"VFLSEAL\x01"
KEY_BYTES = 32                       # AES-256
KEY_ID_BYTES = 8
NONCE_PREFIX_BYTES = 7
TAG_BYTES = 16
SEGMENT = 4 << 20                    # plaintext bytes per GCM segment
#: ...of files written as streams and read by row: a batch of random rows decrypts one small segment per row
STREAM_SEGMENT = 64 << 10
#: folders of a job whose files are read by row (random access): sealed with STREAM_SEGMENT when a rotation seals them
ROW_FOLDERS = frozenset({"table", "aligned"})
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


def _aead(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    return AESGCM(key)


class StreamSealer:
    """Seals what is written to it into `handle` (a binary file open for writing at its start), in the format of
    `AtRestKeys.seal`: the header first, each full segment as soon as the next byte arrives (a segment is flagged
    last only at `close`, so the file never holds more than the segments written). Memory: one segment, two with
    `patchable` (the first segment is kept until `close` so `write_at` can change bytes in it: a row file's header
    says its length at the end)."""

    def __init__(self, handle, keys: AtRestKeys, segment: int | None = None, patchable: bool = False):
        self.handle, self.segment = handle, int(segment or STREAM_SEGMENT)
        self.header = HEADER.pack(MAGIC, bytes.fromhex(keys.current_id), os.urandom(NONCE_PREFIX_BYTES), self.segment)
        self.prefix = self.header[len(MAGIC) + KEY_ID_BYTES:len(MAGIC) + KEY_ID_BYTES + NONCE_PREFIX_BYTES]
        self.aead = _aead(keys.current)
        self.buffer = bytearray()
        self.index = 0
        self.first: bytearray | None = None   # segment 0's plaintext, held until close (patchable)
        self.patchable = patchable
        self.closed = False
        handle.write(self.header)

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        if self.buffer:                      # top up the pending segment; seal it once a byte follows it
            room = self.segment - len(self.buffer)
            self.buffer += view[:room]
            view = view[room:]
            if not len(view):
                return
            self._emit(bytes(self.buffer), last=False)
            self.buffer = bytearray()
        while len(view) > self.segment:      # whole segments straight from the caller's bytes (no copy of a chunk)
            self._emit(bytes(view[:self.segment]), last=False)
            view = view[self.segment:]
        self.buffer += view

    def write_at(self, offset: int, data: bytes) -> None:
        """Change bytes already written, within the first segment (`patchable` only)."""
        end = offset + len(data)
        if self.index == 0 and end <= len(self.buffer):
            self.buffer[offset:end] = data
        elif self.first is not None and end <= len(self.first):
            self.first[offset:end] = data
        else:
            raise ValueError("a sealed stream can change bytes of its first segment only")

    def _emit(self, plaintext: bytes, last: bool) -> None:
        if self.index == 0 and self.patchable and not last:
            self.first = bytearray(plaintext)
            self.handle.write(bytes(self.segment + TAG_BYTES))   # its place, written at close
        else:
            self.handle.write(self.aead.encrypt(_nonce(self.prefix, self.index, last), plaintext, self.header))
        self.index += 1

    def close(self) -> None:
        """Seal the last segment (and the held first one); the caller flushes, fsyncs and renames the file."""
        if self.closed:
            return
        self._emit(bytes(self.buffer), last=True)
        self.buffer = bytearray()
        if self.first is not None:
            self.handle.flush()
            sealed_first = self.aead.encrypt(_nonce(self.prefix, 0, False), bytes(self.first), self.header)
            os.pwrite(self.handle.fileno(), sealed_first, HEADER.size)
            self.first = None
        self.closed = True


class SealedReader:
    """Random access to the plaintext of a sealed file open at `fd`: `size`, `read(offset, length)`.

    Opening authenticates the header and the last segment (a file cut at any byte, even between two segments, fails
    here); a read decrypts the segments it covers and keeps the last one, so reads front to back or of nearby rows
    decrypt each segment once. A segment that does not authenticate raises SealedFileChanged when it is read."""

    def __init__(self, fd: int, path: Path, keys: AtRestKeys | None = None, name: str | None = None):
        self.fd, self.name = fd, name or display_name(path)
        stored = os.fstat(fd).st_size
        head = os.pread(fd, HEADER.size + TAG_BYTES, 0)
        if len(head) < HEADER.size + TAG_BYTES or stored < HEADER.size + TAG_BYTES:
            raise SealedFileChanged(f"{self.name} is cut short: it ends inside its encryption header")
        kid, self.prefix, self.segment = parse_header(head, self.name)
        self.kid = kid
        self.header = head[:HEADER.size]
        keys = keys if keys is not None and keys.key(kid) is not None else opening_keys(path, kid, self.name)
        self.aead = _aead(keys.key(kid))
        self.step = self.segment + TAG_BYTES
        body = stored - HEADER.size
        self.count = -(-body // self.step)
        self._cache: tuple[int, bytes] | None = None
        last = self._segment(self.count - 1)
        self.size = (self.count - 1) * self.segment + len(last)

    def _segment(self, i: int) -> bytes:
        cached = self._cache
        if cached is not None and cached[0] == i:
            return cached[1]
        from cryptography.exceptions import InvalidTag
        data = os.pread(self.fd, self.step, HEADER.size + i * self.step)
        try:
            plaintext = self.aead.decrypt(_nonce(self.prefix, i, i == self.count - 1), data, self.header)
        except InvalidTag:
            raise SealedFileChanged(f"{self.name} does not authenticate under at-rest key {self.kid}: the file was "
                                    "changed or cut after it was written") from None
        self._cache = (i, plaintext)
        return plaintext

    def read(self, offset: int, length: int) -> bytes:
        """Plaintext bytes offset .. offset + length - 1 (fewer at the end of the file)."""
        end = min(offset + length, self.size)
        parts = []
        while offset < end:
            i, within = divmod(offset, self.segment)
            plaintext = self._segment(i)
            part = plaintext[within:within + end - offset]
            if not part:
                break
            parts.append(part)
            offset += len(part)
        return b"".join(parts)

    def chunks(self) -> Iterator[bytes]:
        """The plaintext front to back, a segment at a time."""
        for i in range(self.count):
            yield self._segment(i)


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


def opening_keys(path: Path, kid: str, name: str) -> AtRestKeys:
    """The keys that open a file at `path` sealed under key `kid`; SealedFileError naming `name` if none has it."""
    found = _keys_for(path)
    if found is not None and found[1].key(kid) is not None:
        return found[1]
    with _LOCK:
        others = [keys for keys, _ in _ROOTS.values() if keys.key(kid) is not None]
    if others:   # a job directory copied out of its jobs_dir, read with the node's keys
        return others[0]
    raise SealedFileError(missing_key_message(name, kid, found[1].ids() if found else []))


def unseal(data: bytes, path: Path) -> bytes:
    """The plaintext of `data` read from `path`: as is if it is not sealed."""
    if not is_sealed(data):
        return data
    name = display_name(path)
    kid = parse_header(data, name)[0]
    return opening_keys(path, kid, name).open(data, name)


def read_bytes(path: Path) -> bytes:
    """A job file's content, opened if it is sealed (FileNotFoundError and OSError as `Path.read_bytes`)."""
    return unseal(Path(path).read_bytes(), Path(path))


def read_text(path: Path) -> str:
    return read_bytes(path).decode("utf-8")


def content_sha256(path: Path) -> str:
    """SHA-256 of a file's content: of the plaintext for a sealed file, so a key rotation keeps every hash (read a
    segment at a time)."""
    digest = hashlib.sha256()
    for part in iter_plaintext(path):
        digest.update(part)
    return digest.hexdigest()


def file_is_sealed(path: Path) -> bool:
    with open(path, "rb") as handle:
        return is_sealed(handle.read(len(MAGIC)))


def iter_plaintext(path: Path) -> Iterator[bytes]:
    """A job file's content front to back, opened segment by segment if it is sealed (memory: one segment)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if is_sealed(os.pread(fd, len(MAGIC), 0)):
            yield from SealedReader(fd, Path(path)).chunks()
        else:
            yield from _plain_chunks(fd)
    finally:
        os.close(fd)


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


class _Sink:
    """What a StreamSealer writes, collected for a generator to hand on."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    def take(self) -> list[bytes]:
        parts, self.parts = self.parts, []
        return parts


def resealed(path: Path, keys: AtRestKeys, name: str) -> Iterator[bytes]:
    """The bytes `path` is to be stored as under `keys.current`, a segment at a time (memory: a segment or two): a
    sealed file opened with `keys` and sealed again with its own segment size, a plaintext one sealed (with
    STREAM_SEGMENT in the folders read by row)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if is_sealed(os.pread(fd, len(MAGIC), 0)):
            reader = SealedReader(fd, Path(path), keys, name)
            source, segment = reader.chunks(), reader.segment
        else:
            source = _plain_chunks(fd)
            segment = STREAM_SEGMENT if Path(path).parent.name in ROW_FOLDERS else SEGMENT
        sink = _Sink()
        sealer = StreamSealer(sink, keys, segment)
        for part in source:
            sealer.write(part)
            yield from sink.take()
        sealer.close()
        yield from sink.take()
    finally:
        os.close(fd)


def _plain_chunks(fd: int) -> Iterator[bytes]:
    offset = 0
    while part := os.pread(fd, STREAM_SEGMENT, offset):
        yield part
        offset += len(part)


def reseal_tree(root: Path, keys: AtRestKeys, write, dry_run: bool = False) -> ResealReport:
    """Bring every file under `root` to `keys.current`: re-encrypt files another known key sealed, seal plaintext
    files that sealing applies to. `write(path, stored_chunks)` replaces a file with the bytes an iterable gives (the
    atomic writer's `atomic_write_stored`); a file streams through, a segment at a time, whatever its size. Files
    under a key `keys` lacks are listed in `unknown` and left alone; temp files and spills (`*.tmp`) are skipped."""
    root = Path(root)
    report = ResealReport([], [], [], 0, 0)
    if not root.is_dir():
        return report
    for path in sorted(p for p in root.rglob("*") if p.is_file()
                       and not any(part.endswith(".tmp") for part in p.relative_to(root).parts)):
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
            write(path, resealed(path, keys, rel))
    return report
