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
    """First byte: which message; the rest: its payload, split in two chunks (the hypothesis target varies the
    chunking itself; this one lets libFuzzer grow payloads from real messages)."""
    if not data:
        return
    message_type = MESSAGE_TYPES[data[0] % len(MESSAGE_TYPES)]
    payload = data[1:]
    cut = len(payload) // 2
    stream = [pb.Chunk(data=payload[:cut], last=False), pb.Chunk(data=payload[cut:], last=True)]
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
REPO = Path(__file__).resolve().parents[2]


def seeds(target: str) -> list[bytes]:
    """Valid inputs to start each target's corpus from: without them libFuzzer rarely gets past the first check
    (valid JSON, YAML or protobuf), and explores little more than the refusal of garbage."""
    import json

    import yaml
    if target == "chunks":
        from vfl.protocol import messages as m
        samples = [m.OpenJob(job_id="j1", spec_yaml="job_id: j1\n", resume_epoch=-1),
                   m.ForwardRequest(job_id="j1", epoch=0, step=1, phase="train", rows=b"\x01\x00\x00\x00")]
        return [bytes([MESSAGE_TYPES.index(serde.pb_type(type(x)))]) + serde.to_pb(x).SerializeToString()
                for x in samples if serde.pb_type(type(x)) in MESSAGE_TYPES]
    if target == "psi_envelope":
        return [psi_pb2.Envelope(session_id="s1", hello=psi_pb2.Hello(salt=b"s" * 16, parties=["a", "b"],
                                                                       recipient="b", size=3, chunk_size=8,
                                                                       version=1)).SerializeToString(),
                psi_pb2.Envelope(session_id="s1", chunk=psi_pb2.Chunk(stage=1, index=0, count=1,
                                                                       data=b"\x09" + bytes(31))).SerializeToString(),
                psi_pb2.Envelope(session_id="s1", done=psi_pb2.Done(count=1, digest=b"d")).SerializeToString()]
    if target == "ciphertexts":
        width = ((N * N).bit_length() + 7) // 8
        return [(3 ** 700 % (N * N)).to_bytes(width, "big") * 2]
    if target == "points":
        return [(9).to_bytes(32, "little") * 3]
    if target == "layout":
        from vfl.protocol.layout import default_layout
        return [default_layout(2048, 16, 16, 22, 24, 40, 32.0, 2048, 0).to_json()]
    if target == "share":
        return [json.dumps({"shape": [2, 2], "values": ["1", "-2", "3", "4"]}).encode()]
    if target == "rows":
        return [np.arange(8, dtype="<i4").tobytes()]
    if target == "spec":
        return [path.read_bytes() for path in sorted((REPO / "examples").rglob("jobs/*.yaml"))]
    if target == "node_config":
        return [path.read_bytes() for path in sorted((REPO / "examples").rglob("node.yaml"))] or \
            [yaml.safe_dump({"party": "a", "role": "active", "insecure": True}).encode()]
    return []


def corpus(target: str) -> Path:
    """.cache/fuzz/corpus/<target>, seeded once; libFuzzer adds the inputs it finds interesting."""
    directory = REPO / ".cache" / "fuzz" / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(target)):
        path = directory / f"seed-{i}"
        if not path.exists():
            path.write_bytes(seed)
    return directory


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
    if not any(not o.startswith("-") for o in options[1:]):  # no corpus directory given: the seeded one
        options.append(str(corpus(argv[1])))
    np.seterr(all="ignore")
    atheris.Setup(options, guarded(TARGETS[argv[1]]))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
