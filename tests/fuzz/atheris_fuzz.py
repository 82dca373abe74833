"""Coverage-guided fuzzing of the same decoders with atheris (libFuzzer), for `make fuzz`.

    python tests/fuzz/atheris_fuzz.py --list                       # the targets
    python tests/fuzz/atheris_fuzz.py spec -max_total_time=60      # one target, libFuzzer's options after it

Each target feeds the fuzzer's bytes to one decoder, as a peer or an operator could; a documented refusal
(VflError, PsiError) is a pass, any other exception is a crash that libFuzzer reports with its input, and
-timeout (default 20 s per input here) reports a hang. The hypothesis targets next to this file run the same
decoders in `make test`; atheris adds coverage feedback over longer runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["vfl", "psi"]):
    import numpy as np

    from psi.core.curve25519 import blind_points
    from psi.errors import PsiError
    from psi.transport import psi_pb2
    from psi.transport.codec import decode
    from vfl.config_util import yaml_mapping
    from vfl.errors import VflError
    from vfl.he.wire import ciphertexts_from_bytes
    from vfl.job.spec import parse_job_spec_yaml
    from vfl.node.config import parse_node_config
    from vfl.protocol.layout import Layout
    from vfl.protocol.messages import REPLY_TO, decode_int_matrix, decode_rows
    from vfl.transport import serde
    from vfl.transport.chunking import read_one
    from vfl.transport.proto import node_pb2 as pb

from google.protobuf.message import DecodeError  # noqa: E402

MESSAGE_TYPES = sorted({serde.pb_type(t) for pair in REPLY_TO.items() for t in pair}, key=lambda t: t.__name__)
# a fixed 1024-bit modulus shape: the decoder only needs n (range and gcd checks)
N = (1 << 1023) + 1155
SCALAR = bytes(range(1, 33))


def chunks(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    message_type = MESSAGE_TYPES[fdp.ConsumeIntInRange(0, len(MESSAGE_TYPES) - 1)]
    stream = []
    while fdp.remaining_bytes():
        stream.append(pb.Chunk(data=fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)), last=fdp.ConsumeBool()))
    serde.from_pb(read_one(iter(stream), message_type, max_bytes=4096))


def psi_envelope(data: bytes) -> None:
    envelope = psi_pb2.Envelope()
    try:
        envelope.ParseFromString(data)
    except DecodeError:  # gRPC's deserializer refuses these before the codec sees them
        return
    decode(envelope)


def ciphertexts(data: bytes) -> None:
    ciphertexts_from_bytes(data, N)


def points(data: bytes) -> None:
    blind_points(SCALAR, data)


def layout(data: bytes) -> None:
    Layout.from_json(data).exponent_sum_bits()


def share(data: bytes) -> None:
    decode_int_matrix(data, (2, 2), 64)


def rows(data: bytes) -> None:
    decode_rows(data, 1000, 64)


def spec(data: bytes) -> None:
    parse_job_spec_yaml(data.decode("utf-8", "replace"))


def node_config(data: bytes) -> None:
    parse_node_config(yaml_mapping(data.decode("utf-8", "replace"), "node config"), Path("/srv/node"))


TARGETS = {f.__name__: f for f in (chunks, psi_envelope, ciphertexts, points, layout, share, rows, spec, node_config)}


def guarded(target):
    """The target, with the project's documented refusals counted as passes."""
    def run(data: bytes) -> None:
        try:
            target(data)
        except (VflError, PsiError):
            pass
    return run


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        if len(argv) > 1 and argv[1] == "--list":
            print("\n".join(TARGETS))
            return
        sys.exit(f"usage: {argv[0]} TARGET [libFuzzer options]; targets: {', '.join(TARGETS)}")
    options = [argv[0]] + argv[2:]
    if not any(o.startswith("-timeout=") for o in options):
        options.append("-timeout=20")
    np.seterr(all="ignore")
    atheris.Setup(options, guarded(TARGETS[argv[1]]))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
