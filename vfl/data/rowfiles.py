"""A job's tables on disk, column by column: fixed-width arrays and text columns, written front to back and read in
chunks or by row, so that a table of any length passes through a node in bounded memory.

`ArrayWriter` / `ArrayFile`: rows of a fixed dtype and width (features as float64, labels, row numbers).
`TextWriter` / `TextFile`: one string per row (IDs), as UTF-8 bytes and an array of offsets.

A writer writes a temp file in the destination folder and renames it into place when it is closed (the atomic
writer's rule, vfl/data/atomic.py), so a reader never sees half a column; a failed write is a StorageError naming
the party and the kind of file. Readers read what they are asked for with positional reads (`os.pread`), never the
whole file: `chunks` front to back, `take` / `gather` any rows (sorted and read in runs).

Under a jobs_dir the node protects with its at-rest key (vfl/data/sealed.py) a writer seals as it writes
(`sealed.StreamSealer`: its plaintext never reaches the disk, not even in the temp file) and a reader opens by byte
range (`sealed.SealedReader`): a file changed or cut after it was written is a SealedFileChanged, never wrong rows.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vfl.data import sealed
from vfl.data.atomic import TEMP_SUFFIX, fsync_dir, storage_error
from vfl.errors import DataError

MAGIC = b"VFLROWS1"
HEADER_BYTES = 256
#: rows read at once when a text column is read front to back
CHUNK_ROWS = 1 << 16
#: bytes read at once when an array file is read front to back (rows of a wide matrix are many bytes each)
CHUNK_BYTES = 4 << 20
#: rows between two wanted rows that `take` reads through rather than seeking
GAP_ROWS = 16


class _Writer:
    """A temp file beside `path`, renamed to `path` by `close` (or removed by `discard`); sealed as it is written
    where the node's at-rest encryption applies to `path`. `write_at` changes bytes already written (with sealing:
    within the first STREAM_SEGMENT bytes, which a row file's header is)."""

    def __init__(self, path: Path, kind: str, party: str | None):
        self.path, self.kind, self.party = Path(path), kind, party
        keys = sealed.sealing_keys(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = self.path.with_name(f".{self.path.name}.{os.urandom(6).hex()}{TEMP_SUFFIX}")
            self.handle = open(self.tmp, "wb")
            self.sealer = sealed.StreamSealer(self.handle, keys, patchable=True) if keys is not None else None
        except OSError as exc:
            raise storage_error(exc, self.path, kind, party) from None

    def write(self, data: bytes) -> None:
        try:
            (self.sealer or self.handle).write(data)
        except OSError as exc:
            self.discard()
            raise storage_error(exc, self.path, self.kind, self.party) from None

    def write_at(self, offset: int, data: bytes) -> None:
        try:
            if self.sealer is not None:
                self.sealer.write_at(offset, data)
                return
            self.handle.flush()
            os.pwrite(self.handle.fileno(), data, offset)
        except OSError as exc:
            self.discard()
            raise storage_error(exc, self.path, self.kind, self.party) from None

    def close(self) -> None:
        try:
            if self.sealer is not None:
                self.sealer.close()
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            self.discard()
            raise storage_error(exc, self.path, self.kind, self.party) from None

    def discard(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)


class _Reader:
    """Positional reads of one file's plaintext (thread-safe: `os.pread` does not move a shared offset; a sealed
    file's reader keeps its last segment as one tuple)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd = -1
        self.opened: sealed.SealedReader | None = None
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
            if sealed.is_sealed(os.pread(self.fd, len(sealed.MAGIC), 0)):
                self.opened = sealed.SealedReader(self.fd, self.path)
                self.size = self.opened.size
            else:
                self.size = os.fstat(self.fd).st_size
        except OSError as exc:
            self.close()
            raise DataError(f"{self.path.name}: cannot read ({exc.strerror or exc})") from None
        except BaseException:
            self.close()
            raise

    def read(self, offset: int, length: int) -> bytes:
        if self.opened is not None:
            data = self.opened.read(offset, length)
            if len(data) < length:
                raise DataError(f"{self.path.name}: the file ends at byte {offset + len(data)}, before "
                                f"{offset + length}")
            return data
        parts, done = [], 0
        while done < length:
            part = os.pread(self.fd, length - done, offset + done)
            if not part:
                raise DataError(f"{self.path.name}: the file ends at byte {offset + done}, before {offset + length}")
            parts.append(part)
            done += len(part)
        return b"".join(parts)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass


def _header(meta: dict) -> bytes:
    body = MAGIC + json.dumps(meta, sort_keys=True).encode()
    if len(body) > HEADER_BYTES:
        raise ValueError("row file header too long")
    return body.ljust(HEADER_BYTES, b" ")


class ArrayWriter:
    """Rows of `dtype` (`width` values each, a matrix; None: one scalar per row), appended in chunks."""

    def __init__(self, path: Path, dtype, width: int | None = None, kind: str = "table column",
                 party: str | None = None):
        self.dtype, self.width = np.dtype(dtype), None if width is None else int(width)
        self.rows = 0
        self._out = _Writer(path, kind, party)
        self._out.write(_header({"dtype": self.dtype.str, "width": self.width, "rows": -1}))

    def append(self, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array, dtype=self.dtype)
        expected = (len(array),) if self.width is None else (len(array), self.width)
        if array.shape != expected:
            raise ValueError(f"row file: rows of shape {expected[1:]} expected, got {array.shape[1:]}")
        self._out.write(array.tobytes())
        self.rows += len(array)

    def close(self) -> int:
        self._out.write_at(0, _header({"dtype": self.dtype.str, "width": self.width, "rows": self.rows}))
        self._out.close()
        return self.rows

    def discard(self) -> None:
        self._out.discard()


class ArrayFile:
    """An `ArrayWriter`'s file, read by rows."""

    def __init__(self, path: Path):
        self._in = _Reader(path)
        head = self._in.read(0, HEADER_BYTES)
        if not head.startswith(MAGIC):
            raise DataError(f"{Path(path).name}: not a row file of this version of vfl")
        meta = json.loads(head[len(MAGIC):].decode().strip())
        self.dtype, self.width, self.rows = np.dtype(meta["dtype"]), meta["width"], int(meta["rows"])
        self.row_bytes = self.dtype.itemsize * (1 if self.width is None else self.width)
        if self.rows < 0 or HEADER_BYTES + self.rows * self.row_bytes != self._in.size:
            raise DataError(f"{Path(path).name}: the row file is incomplete ({self._in.size} bytes)")

    def __len__(self) -> int:
        return self.rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows,) if self.width is None else (self.rows, self.width)

    def _array(self, data: bytes, count: int) -> np.ndarray:
        if self.width is None:
            return np.frombuffer(data, dtype=self.dtype, count=count)
        return np.frombuffer(data, dtype=self.dtype, count=count * self.width).reshape(count, self.width)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start .. stop - 1."""
        start, stop = max(0, start), min(self.rows, stop)
        if stop <= start:
            return self._array(b"", 0)
        return self._array(self._in.read(HEADER_BYTES + start * self.row_bytes, (stop - start) * self.row_bytes),
                           stop - start).copy()

    def chunks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) front to back, `size` rows at a time (default: about CHUNK_BYTES)."""
        size = size or max(1, CHUNK_BYTES // max(self.row_bytes, 1))
        for start in range(0, self.rows, size):
            yield start, self.read(start, start + size)

    def take(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The rows at `rows` (any order, repeats allowed), read in sorted runs."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return self._array(b"", 0).copy()
        if rows.min() < 0 or rows.max() >= self.rows:
            raise IndexError(f"row {int(rows.max() if rows.max() >= self.rows else rows.min())} outside the "
                             f"{self.rows} rows of {self._in.path.name}")
        wanted, where = np.unique(rows, return_inverse=True)
        breaks = np.flatnonzero(np.diff(wanted) > GAP_ROWS) + 1
        parts = []
        for run in np.split(wanted, breaks):
            block = self.read(int(run[0]), int(run[-1]) + 1)
            parts.append(block[run - run[0]])
        return np.concatenate(parts)[where]

    def close(self) -> None:
        self._in.close()


class TextWriter:
    """One string per row, appended in chunks: UTF-8 bytes in `path`, offsets in `path` + '.offsets'."""

    def __init__(self, path: Path, kind: str = "table column", party: str | None = None):
        self.path = Path(path)
        self._data = _Writer(self.path, kind, party)
        self._offsets = ArrayWriter(offsets_path(self.path), np.int64, kind=kind, party=party)
        self._offsets.append(np.zeros(1, dtype=np.int64))
        self._at = 0

    def append(self, values: Sequence[str]) -> None:
        blobs = [v.encode("utf-8", "surrogatepass") for v in values]
        ends = np.cumsum(np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs))) + self._at
        self._data.write(b"".join(blobs))
        self._offsets.append(ends)
        if len(ends):
            self._at = int(ends[-1])

    @property
    def rows(self) -> int:
        return self._offsets.rows - 1

    def close(self) -> int:
        self._data.close()
        self._offsets.close()
        return self.rows

    def discard(self) -> None:
        self._data.discard()
        self._offsets.discard()


def offsets_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".offsets")


class TextFile:
    """A `TextWriter`'s column: `len`, `[i]`, `gather(rows)`, `chunks(size)`, iteration."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._offsets = ArrayFile(offsets_path(self.path))
        self._in = _Reader(self.path)
        if len(self._offsets) < 1:
            raise DataError(f"{self.path.name}: the text column is incomplete")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _decode(self, data: bytes, bounds: np.ndarray, base: int) -> list[str]:
        return [data[s - base:e - base].decode("utf-8", "surrogatepass")
                for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist())]

    def _range(self, start: int, stop: int) -> list[str]:
        bounds = self._offsets.read(start, stop + 1)
        if len(bounds) < 2:
            return []
        data = self._in.read(int(bounds[0]), int(bounds[-1] - bounds[0]))
        return self._decode(data, bounds, int(bounds[0]))

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[tuple[int, list[str]]]:
        for start in range(0, len(self), size):
            yield start, self._range(start, min(start + size, len(self)))

    def __iter__(self) -> Iterator[str]:
        for _, values in self.chunks():
            yield from values

    def __getitem__(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} outside the {len(self)} rows of {self.path.name}")
        i = int(i) % len(self)
        return self._range(i, i + 1)[0]

    def gather(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The strings at `rows` (any order), read in sorted runs."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return []
        wanted, where = np.unique(rows, return_inverse=True)
        if wanted[0] < 0 or wanted[-1] >= len(self):
            raise IndexError(f"row {int(wanted[-1])} outside the {len(self)} rows of {self.path.name}")
        starts = self._offsets.take(wanted)
        ends = self._offsets.take(wanted + 1)
        values: list[str] = []
        breaks = np.flatnonzero(np.diff(wanted) > GAP_ROWS) + 1
        for s_run, e_run in zip(np.split(starts, breaks), np.split(ends, breaks)):
            base = int(s_run[0])
            data = self._in.read(base, int(e_run[-1]) - base)
            values += [data[s - base:e - base].decode("utf-8", "surrogatepass")
                       for s, e in zip(s_run.tolist(), e_run.tolist())]
        return [values[i] for i in where.tolist()]

    def close(self) -> None:
        self._offsets.close()
        self._in.close()


class NpyFile:
    """A one-dimensional `.npy` array file (as `np.save` writes it, or a stream of it), read by rows without loading
    it: sealed at rest it cannot be memory-mapped, so the header and the rows go through `_Reader`."""

    def __init__(self, path: Path):
        import io
        self._in = _Reader(path)
        head = io.BytesIO(self._in.read(0, min(self._in.size, HEADER_BYTES * 16)))
        try:
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, _, dtype = read[np.lib.format.read_magic(head)](head)
        except (ValueError, KeyError) as exc:
            self._in.close()
            raise DataError(f"{Path(path).name}: not a numpy array file ({exc})") from None
        if len(shape) != 1 or dtype.hasobject:
            self._in.close()
            raise DataError(f"{Path(path).name}: a one-dimensional numeric array was expected, got shape {shape}")
        self.dtype, self.rows, self.offset = dtype, int(shape[0]), head.tell()
        if self.offset + self.rows * dtype.itemsize != self._in.size:
            self._in.close()
            raise DataError(f"{Path(path).name}: the array file is incomplete ({self._in.size} bytes)")

    def __len__(self) -> int:
        return self.rows

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(self.rows, stop)
        if stop <= start:
            return np.zeros(0, dtype=self.dtype)
        size = self.dtype.itemsize
        return np.frombuffer(self._in.read(self.offset + start * size, (stop - start) * size), dtype=self.dtype).copy()

    def chunks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        size = size or max(1, CHUNK_BYTES // self.dtype.itemsize)
        for start in range(0, self.rows, size):
            yield start, self.read(start, start + size)

    def close(self) -> None:
        self._in.close()
