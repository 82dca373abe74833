"""Temporary files for work that outgrows memory: records in buckets on disk, encrypted under a key held in memory.

A :class:`Spill` is one computation's private directory (mode 0700). Its :class:`Buckets` take records (rows of
named columns: fixed-width numpy columns, or text columns of ``str``/``bytes``), group them by a bucket number the
caller computes, buffer them up to a memory budget and append them to one file per bucket; reading a bucket gives
its records back in the order they were added. A caller bounds its memory by choosing the bucket count so that one
bucket fits: a random bucket per record and a shuffle per bucket is a uniformly random order of everything, the
leading bits of a uniformly distributed value make buckets whose concatenation is sorted by that value, a range of
row numbers per bucket regroups records by row.

Every block written is sealed with ChaCha20-Poly1305 under a key drawn from the OS generator when the spill opens;
the key exists only in this process's memory. What a spill holds (IDs, blinded values, a party's rows) is therefore
unreadable once the process ends, even if a crash leaves the files behind, and :meth:`Spill.close` deletes them.
"""
from __future__ import annotations

import shutil
import struct
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Mapping, Optional, Union

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

#: a text column: each record holds one str or bytes value
TEXT = "text"
#: bytes of records buffered in memory by one Buckets before it writes them out
DEFAULT_BUDGET = 16 << 20
_LENGTH = struct.Struct("<I")
_KIND_STR, _KIND_BYTES = 0, 1

Column = Union[np.ndarray, list]
Frame = dict


def _surrogate_safe(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def free_bytes(parent: Optional[Union[str, Path]] = None) -> int:
    """Free bytes on the disk a spill under `parent` (default: the system's temp directory) would use."""
    where = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    while not where.exists() and where != where.parent:
        where = where.parent
    return shutil.disk_usage(where).free


class Spill:
    """A private directory of encrypted bucket files; ``parent`` is where it is created (default: the system's temp
    directory). Use as a context manager, or call :meth:`close`."""

    def __init__(self, parent: Optional[Union[str, Path]] = None, prefix: str = "spill-"):
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="." + prefix, suffix=".tmp", dir=parent))
        self._aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
        self._lock = threading.Lock()
        self._next_file = 0
        self.closed = False

    def _file_number(self) -> int:
        with self._lock:
            self._next_file += 1
            return self._next_file

    def buckets(self, count: int, columns: Mapping[str, object], budget: int = DEFAULT_BUDGET) -> "Buckets":
        """``count`` buckets of records with ``columns``: name -> numpy dtype (shape ``(n, k)`` columns give the
        dtype as ``(dtype, k)``) or :data:`TEXT`."""
        return Buckets(self, count, columns, budget)

    def seal(self, number: int, counter: int, data: bytes) -> bytes:
        return self._aead.encrypt(struct.pack("<IQ", number, counter), data, None)

    def open(self, number: int, counter: int, data: bytes) -> bytes:
        return self._aead.decrypt(struct.pack("<IQ", number, counter), data, None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Spill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Schema:
    def __init__(self, columns: Mapping[str, object]):
        self.names = list(columns)
        self.kinds: dict[str, object] = {}
        for name, spec in columns.items():
            if spec == TEXT:
                self.kinds[name] = TEXT
            elif isinstance(spec, tuple):
                self.kinds[name] = (np.dtype(spec[0]), int(spec[1]))   # a matrix (width may be 0)
            else:
                self.kinds[name] = (np.dtype(spec), None)               # one value per record

    def rows(self, frame: Frame) -> int:
        lengths = {len(frame[name]) for name in self.names}
        if len(lengths) != 1:
            raise ValueError(f"spill: columns of different lengths {lengths}")
        return lengths.pop()

    def nbytes(self, frame: Frame) -> int:
        total = 0
        for name in self.names:
            column = frame[name]
            if self.kinds[name] == TEXT:
                total += sum(len(v) for v in column) + 5 * len(column)
            else:
                total += column.nbytes
        return total

    def encode(self, frame: Frame) -> bytes:
        n = self.rows(frame)
        parts = [_LENGTH.pack(n)]
        for name in self.names:
            column = frame[name]
            if self.kinds[name] == TEXT:
                kinds = np.empty(n, dtype=np.uint8)
                blobs = []
                for i, value in enumerate(column):
                    if isinstance(value, str):
                        kinds[i], blob = _KIND_STR, _surrogate_safe(value)
                    elif isinstance(value, (bytes, bytearray)):
                        kinds[i], blob = _KIND_BYTES, bytes(value)
                    else:
                        raise TypeError(f"spill: a text column holds str or bytes, got {type(value).__name__}")
                    blobs.append(blob)
                lengths = np.fromiter((len(b) for b in blobs), dtype="<u4", count=n)
                parts += [kinds.tobytes(), lengths.tobytes(), b"".join(blobs)]
            else:
                dtype, width = self.kinds[name]
                parts.append(np.ascontiguousarray(column, dtype=dtype).tobytes())
        return b"".join(parts)

    def decode(self, data: bytes) -> Frame:
        view = memoryview(data)
        (n,) = _LENGTH.unpack_from(view)
        at = _LENGTH.size
        out: Frame = {}
        for name in self.names:
            if self.kinds[name] == TEXT:
                kinds = np.frombuffer(view, dtype=np.uint8, count=n, offset=at)
                at += n
                lengths = np.frombuffer(view, dtype="<u4", count=n, offset=at).astype(np.int64)
                at += 4 * n
                ends = np.cumsum(lengths) + at
                starts = ends - lengths
                values: list = []
                for kind, s, e in zip(kinds.tolist(), starts.tolist(), ends.tolist()):
                    blob = bytes(view[s:e])
                    values.append(blob.decode("utf-8", "surrogatepass") if kind == _KIND_STR else blob)
                at = int(ends[-1]) if n else at
                out[name] = values
            else:
                dtype, width = self.kinds[name]
                count = n if width is None else n * width
                array = np.frombuffer(view, dtype=dtype, count=count, offset=at).copy()
                at += count * dtype.itemsize
                out[name] = array if width is None else array.reshape(n, width)
        return out

    def empty(self) -> Frame:
        out: Frame = {}
        for name in self.names:
            if self.kinds[name] == TEXT:
                out[name] = []
            else:
                dtype, width = self.kinds[name]
                out[name] = np.zeros(0 if width is None else (0, width), dtype=dtype)
        return out

    def concat(self, frames: list[Frame]) -> Frame:
        if not frames:
            return self.empty()
        if len(frames) == 1:
            return frames[0]
        out: Frame = {}
        for name in self.names:
            if self.kinds[name] == TEXT:
                out[name] = [v for f in frames for v in f[name]]
            else:
                out[name] = np.concatenate([f[name] for f in frames])
        return out

    def select(self, frame: Frame, index: np.ndarray) -> Frame:
        out: Frame = {}
        for name in self.names:
            column = frame[name]
            out[name] = [column[i] for i in index.tolist()] if self.kinds[name] == TEXT else column[index]
        return out


class Buckets:
    """``count`` append-only bucket files of one spill; see the module docstring."""

    def __init__(self, spill: Spill, count: int, columns: Mapping[str, object], budget: int = DEFAULT_BUDGET):
        if count < 1:
            raise ValueError(f"spill: at least one bucket, got {count}")
        self.spill = spill
        self.count = count
        self.schema = _Schema(columns)
        self.budget = budget
        self._number = spill._file_number()
        self._pending: list[list[Frame]] = [[] for _ in range(count)]
        self._pending_bytes = 0
        self._blocks = [0] * count
        self.sizes = np.zeros(count, dtype=np.int64)   # records added per bucket

    def _path(self, bucket: int) -> Path:
        # named like an atomic writer's temp file (".<name>.tmp"): a node deletes such strays when it starts
        return self.spill.dir / f".{self._number}-{bucket}.tmp"

    def add(self, bucket: Union[np.ndarray, int], frame: Frame) -> None:
        """Records of ``frame`` (a dict of equally long columns), record i into bucket ``bucket[i]`` (or all into
        one bucket)."""
        n = self.schema.rows(frame)
        if n == 0:
            return
        if np.isscalar(bucket):
            groups = [(int(bucket), frame)]
        else:
            bucket = np.asarray(bucket, dtype=np.int64)
            order = np.argsort(bucket, kind="stable")
            sorted_buckets = bucket[order]
            cuts = np.flatnonzero(np.diff(sorted_buckets)) + 1
            starts = np.concatenate(([0], cuts))
            ends = np.concatenate((cuts, [n]))
            groups = [(int(sorted_buckets[s]), self.schema.select(frame, order[s:e])) for s, e in zip(starts, ends)]
        for b, part in groups:
            if not 0 <= b < self.count:
                raise ValueError(f"spill: bucket {b} outside 0..{self.count - 1}")
            self._pending[b].append(part)
            self.sizes[b] += self.schema.rows(part)
            self._pending_bytes += self.schema.nbytes(part)
        if self._pending_bytes > self.budget:
            self.flush()

    def flush(self) -> None:
        for b in range(self.count):
            self._write(b)
        self._pending_bytes = 0

    def _write(self, b: int) -> None:
        frames = self._pending[b]
        if not frames:
            return
        data = self.schema.encode(self.schema.concat(frames))
        self._pending[b] = []
        sealed = self.spill.seal(self._number, (b << 40) | self._blocks[b], data)
        self._blocks[b] += 1
        with open(self._path(b), "ab") as out:
            out.write(_LENGTH.pack(len(sealed)) + sealed)

    def blocks(self, b: int) -> Iterator[Frame]:
        """Bucket ``b``'s records block by block, in the order they were added (bounded memory)."""
        pending = list(self._pending[b])
        path = self._path(b)
        if path.exists():
            with open(path, "rb") as handle:
                counter = 0
                while True:
                    head = handle.read(_LENGTH.size)
                    if not head:
                        break
                    (length,) = _LENGTH.unpack(head)
                    data = self.spill.open(self._number, (b << 40) | counter, handle.read(length))
                    counter += 1
                    yield self.schema.decode(data)
        yield from pending

    def read(self, b: int) -> Frame:
        """Every record of bucket ``b``, in the order added, as one frame."""
        return self.schema.concat(list(self.blocks(b)))

    def drop(self, b: int) -> None:
        """Forget bucket ``b`` (its file is deleted)."""
        self._pending_bytes -= sum(self.schema.nbytes(f) for f in self._pending[b])
        self._pending[b] = []
        self._path(b).unlink(missing_ok=True)

    def drop_all(self) -> None:
        for b in range(self.count):
            self.drop(b)


#: records per bucket that a caller aims for: 2^18 records of ~40 bytes is ~10 MB in memory while a bucket is read
BUCKET_ITEMS = 1 << 18
#: buckets of one kind at most (one file each); above BUCKET_ITEMS * MAX_BUCKETS records a bucket holds more
MAX_BUCKETS = 1024


def bucket_count(items: int, per_bucket: Optional[int] = None, most: int = MAX_BUCKETS) -> int:
    """How many buckets hold `items` records at about `per_bucket` (default BUCKET_ITEMS) each (1 .. `most`)."""
    per_bucket = per_bucket or BUCKET_ITEMS
    return int(min(most, max(1, -(-int(items) // per_bucket))))


def bucket_bits(items: int, per_bucket: Optional[int] = None, most: int = MAX_BUCKETS) -> int:
    """log2 of a power-of-two bucket count for `items` records (buckets chosen by a value's leading bits)."""
    return (bucket_count(items, per_bucket, most) - 1).bit_length()


def leading_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """The leading `bits` bits of uint64 `values`: a bucket number in 0 .. 2^bits - 1 that keeps their order."""
    if bits == 0:
        return np.zeros(len(values), dtype=np.int64)
    return (np.asarray(values, dtype=np.uint64) >> np.uint64(64 - bits)).astype(np.int64)
