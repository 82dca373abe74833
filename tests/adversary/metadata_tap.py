"""Test-only node launcher: ``python tests/adversary/metadata_tap.py serve --config node.yaml``.

It runs the ordinary ``vfl`` CLI in this process after one change, here only (production code has no hook):
every channel the node opens to a peer (``vfl.transport.tls.open_channel``, which ``Node.channel`` uses) gets a
client interceptor that writes, for each finished call, what the node received besides the payload: the
method, the status code and details, and the initial and trailing metadata. One JSON object per line goes to
``$VFL_TAP_DIR/<party>-<pid>.jsonl``.

Started for the active party, this is what that party's own process holds after a job: an adversary playing
the active party reads it. The record is taken when each call is done (its done callback), so a call whose
reply the node reads without draining the stream (``chunking.call_unary``) is recorded too.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

DIR_ENV = "VFL_TAP_DIR"


def _entries(metadata: Iterable | None) -> list[list[str]]:
    """Metadata as [key, value] pairs of text (binary values, keys ending in -bin, as base64)."""
    out = []
    for key, value in metadata or ():
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        out.append([str(key), str(value)])
    return out


class Tap:
    """A client interceptor for all four call shapes; records each call when it is done."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def record(self, method: str, call: Any) -> None:
        entry = {"method": method, "code": call.code().name if call.code() is not None else None,
                 "details": call.details(), "initial_metadata": _entries(call.initial_metadata()),
                 "trailing_metadata": _entries(call.trailing_metadata())}
        with self.lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    def _tapped(self, details, call):
        method = details.method.decode() if isinstance(details.method, bytes) else details.method

        def on_done(done) -> None:
            # Done callbacks run on the channel's event thread, and a failed call may get its status event
            # before its initial-metadata event: reading the metadata there would wait for an event that
            # thread can no longer process. Record from a thread of our own instead.
            threading.Thread(target=self.record, args=(method, done), daemon=True).start()
        call.add_done_callback(on_done)
        return call

    def intercept_unary_unary(self, continuation, details, request):
        return self._tapped(details, continuation(details, request))

    def intercept_unary_stream(self, continuation, details, request):
        return self._tapped(details, continuation(details, request))

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return self._tapped(details, continuation(details, request_iterator))

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return self._tapped(details, continuation(details, request_iterator))


def install(directory: Path, party: str) -> None:
    import grpc

    from vfl.transport import tls

    class _Interceptor(Tap, grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                       grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
        pass

    directory.mkdir(parents=True, exist_ok=True)
    tap = _Interceptor(directory / f"{party}-{os.getpid()}.jsonl")
    real_open_channel = tls.open_channel

    def open_channel(*args, **kwargs):
        return grpc.intercept_channel(real_open_channel(*args, **kwargs), tap)
    tls.open_channel = open_channel


def read_tap(directory: Path, party: str) -> list[dict]:
    """Every call record the tap wrote for `party`'s node (all its processes), in file order."""
    records = []
    for path in sorted(Path(directory).glob(f"{party}-*.jsonl")):
        records += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return records


def _party_of(argv: list[str]) -> str:
    from vfl.node.config import load_node_config
    return load_node_config(argv[argv.index("--config") + 1]).party


def main() -> int:
    directory = os.environ.get(DIR_ENV)
    if not directory:
        raise SystemExit(f"{DIR_ENV} is not set: this launcher is for tests only")
    install(Path(directory), _party_of(sys.argv))
    from vfl.cli.main import main as vfl_main
    return vfl_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
