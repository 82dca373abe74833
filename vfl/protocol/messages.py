"""The messages between an active party and one passive party during a job, as plain typed dataclasses.

They carry what crosses the wire and nothing else: ciphertexts and matrices as the bytes the schemes
(`vfl.protocol.schemes`) encode, so the job runtimes never see protobuf and the in-process link of the tests
moves the very bytes the gRPC link does. `vfl.transport.serde` converts them to and from `node.proto`, field for
field: each class has the name and the fields of its protobuf message.

A request is answered by exactly one reply type (`REPLY_TO`); `METHOD` names the RPC that carries it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Union

import numpy as np

from vfl.errors import ProtocolError, shorten


#: OpenJob.resume_epoch of a new job
FRESH = -1
#: OpenJob.resume_epoch of a job resumed on its saved PSI alignment before any checkpoint: set up afresh
AFTER_PSI = -2


@dataclass(frozen=True)
class OpenJob:
    job_id: str
    spec_yaml: str = ""           # the whole job spec; the passive resolves its own dataset by name
    resume_epoch: int = FRESH     # FRESH; AFTER_PSI; e >= 0: resume after completed epoch e (its checkpoint)


@dataclass(frozen=True)
class OpenJobReply:
    rows: int = 0                 # rows of this party's dataset (before PSI)
    feature_dim: int = 0
    resumable_epoch: int = -1     # the last epoch this party holds a checkpoint of
    id_shape: str = ""            # JSON: coarse shape statistics of this party's IDs, never IDs (vfl/data/id_shape.py)
    lease_seconds: float = 0.0    # the job closes here if its active party sends nothing (not even RenewLease) this long


@dataclass(frozen=True)
class RenewLease:
    """The active party is still behind the job: the passive party's lease on it starts again."""
    job_id: str


@dataclass(frozen=True)
class RenewLeaseReply:
    lease_seconds: float = 0.0


@dataclass(frozen=True)
class SetupRequest:
    job_id: str
    active_public_key: bytes = b""   # the active party's public key (scheme-encoded), empty without encryption
    aligned_rows: int = 0            # rows PSI produced (a consistency check)
    interactive_out: int = 0         # m
    layout: bytes = b""              # vfl.protocol.layout.Layout as JSON
    active_djn_base: bytes = b""     # h_s of the active key: the passive party re-randomizes with it


@dataclass(frozen=True)
class SetupReply:
    passive_public_key: bytes = b""
    bottom_out: int = 0              # d
    init_masked: bytes = b""         # W^p - V0, statistically masked by V0 (int matrix, `encode_int_matrix`)
    passive_djn_base: bytes = b""


@dataclass(frozen=True)
class ForwardRequest:
    job_id: str
    epoch: int = 0
    step: int = 0
    phase: str = "train"             # train | eval | predict
    rows: bytes = b""                # int32 little-endian positions in the aligned table (`encode_rows`)
    u_ciphertexts: bytes = b""       # [U]_A at every slot group


@dataclass(frozen=True)
class ForwardReply:
    z_ciphertexts: bytes = b""       # [h W]_A, packed rows
    v_ciphertexts: bytes = b""       # [V]_P at every slot group, train phase only
    h_plain: bytes = b""             # plaintext scheme only: float32 h


@dataclass(frozen=True)
class WeightGradientRequest:
    job_id: str
    epoch: int = 0
    step: int = 0
    delta_ciphertexts: bytes = b""   # [per-example gradient rows]_A


@dataclass(frozen=True)
class WeightGradientReply:
    masked_gradient: bytes = b""     # [h^T D + Q]_A


@dataclass(frozen=True)
class InputGradientRequest:
    job_id: str
    epoch: int = 0
    step: int = 0
    grad_ciphertexts: bytes = b""    # [delta W^T]_P, packed rows
    grad_plain: bytes = b""          # plaintext scheme only: float32 dL/dh


@dataclass(frozen=True)
class InputGradientReply:
    pass


@dataclass(frozen=True)
class EndEpochRequest:
    job_id: str
    epoch: int = 0
    checkpoint: bool = False


@dataclass(frozen=True)
class EndEpochReply:
    checkpoint: str = ""             # the checkpoint's path under the passive party's jobs directory, for the log


@dataclass(frozen=True)
class CloseJobRequest:
    """Closing is two-phase for a job that succeeded: `prepare` (write every artifact, staged), then `commit`
    (make them visible, mark the job succeeded) once every party prepared. Any other status closes at once and
    rolls back what was staged: failed | cancelled | suspended (a drained active node; the job resumes later)."""
    job_id: str
    status: str = "succeeded"        # succeeded | failed | cancelled | suspended
    save_model: bool = False
    phase: str = ""                  # prepare | commit (status succeeded); empty for the other statuses
    reason: str = ""                 # why the job ends, for the passive party's log and status (not succeeded)


@dataclass(frozen=True)
class CloseJobReply:
    model_path: str = ""
    report_json: bytes = b""         # this party's privacy report (and, with report_handler_timing, its timing)


# ------------------------------------------------------------------------------------ online scoring
# Not part of a job: a scoring session ties an exported model's two parts together (vfl/protocol/scoring.py).

@dataclass(frozen=True)
class OpenScoring:
    """A scoring session for one trained model between the active party and this passive party."""
    model_id: str                    # the trained model's job id: both parties' exported parts carry it
    layout: bytes = b""              # the layout the active party's part holds for this link (must equal ours)
    active_public_key: bytes = b""   # the active party's serving key (it lives as long as the session)
    active_djn_base: bytes = b""
    u_ciphertexts: bytes = b""       # [U]_A at every slot group, encrypted once for the whole session


@dataclass(frozen=True)
class OpenScoringReply:
    session: str = ""
    max_ids: int = 0                 # the most IDs this party scores in one ScoreRows


@dataclass(frozen=True)
class ScoreRows:
    session: str
    ids: bytes = b""                 # the IDs to score, in the form the parties agreed on (`encode_ids`)


@dataclass(frozen=True)
class ScoreRowsReply:
    z_ciphertexts: bytes = b""       # [h W]_A of the rows this party scored, packed in request order
    status: bytes = b""              # one byte per requested ID: ROW_SCORED, ROW_UNKNOWN or ROW_UNAVAILABLE


#: ScoreRowsReply.status of one ID: scored; not held by this party (its policy reveals that); not scored (held
#: or not: a party whose policy withholds which IDs it holds answers this for both)
ROW_SCORED, ROW_UNKNOWN, ROW_UNAVAILABLE = 0, 1, 2
#: the longest ID scoring accepts (characters)
MAX_ID_CHARS = 256


Request = Union[OpenJob, SetupRequest, ForwardRequest, WeightGradientRequest, InputGradientRequest,
                EndEpochRequest, CloseJobRequest, RenewLease, OpenScoring, ScoreRows]
Reply = Union[OpenJobReply, SetupReply, ForwardReply, WeightGradientReply, InputGradientReply, EndEpochReply,
              CloseJobReply, RenewLeaseReply, OpenScoringReply, ScoreRowsReply]

REPLY_TO: dict[type, type] = {
    OpenJob: OpenJobReply, SetupRequest: SetupReply, ForwardRequest: ForwardReply,
    WeightGradientRequest: WeightGradientReply, InputGradientRequest: InputGradientReply,
    EndEpochRequest: EndEpochReply, CloseJobRequest: CloseJobReply, RenewLease: RenewLeaseReply,
    OpenScoring: OpenScoringReply, ScoreRows: ScoreRowsReply,
}
METHOD: dict[type, str] = {
    OpenJob: "OpenJob", SetupRequest: "Setup", ForwardRequest: "Forward", WeightGradientRequest: "WeightGradient",
    InputGradientRequest: "InputGradient", EndEpochRequest: "EndEpoch", CloseJobRequest: "CloseJob",
    RenewLease: "RenewLease", OpenScoring: "OpenScoring", ScoreRows: "ScoreRows",
}
#: the requests of online scoring, which a node hands to its serving side instead of its jobs
SCORING_REQUESTS = (OpenScoring, ScoreRows)
MESSAGE_TYPES: dict[str, type] = {cls.__name__: cls for cls in (*REPLY_TO, *REPLY_TO.values())}


def sent_fields(message) -> Iterator[tuple[str, int]]:
    """(field name, size in bytes) of each field a message carries, for the wire ledger.

    Like protobuf's ListFields: fields at their default (empty, zero, false) are not sent; the job id is routing.
    """
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if f.name == "job_id" or not value:
            continue
        yield f.name, len(value) if isinstance(value, (bytes, str)) else 8


# ------------------------------------------------------------------------------------ payload codecs

def encode_rows(rows: np.ndarray) -> bytes:
    return np.asarray(rows, dtype="<i4").tobytes()


def decode_rows(data: bytes, table_rows: int, max_batch: int) -> np.ndarray:
    """Row positions of a forward call, refused unless they are 1..max_batch positions inside the table."""
    if len(data) % 4:
        raise ProtocolError("forward: rows must be int32 values")
    rows = np.frombuffer(data, dtype="<i4").astype(np.int64)
    if len(rows) == 0 or len(rows) > max_batch:
        raise ProtocolError(f"forward: batch of {len(rows)} rows (allowed 1..{max_batch})")
    if rows.min() < 0 or rows.max() >= table_rows:
        raise ProtocolError(f"forward: row position out of range 0..{table_rows - 1}")
    return rows


def encode_floats(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def decode_floats(data: bytes, shape: tuple[int, int], what: str) -> np.ndarray:
    if len(data) != shape[0] * shape[1] * 4:
        raise ProtocolError(f"{what}: {len(data)} bytes, expected {shape[0]}x{shape[1]} float32 values")
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float64)


def encode_int_matrix(values: np.ndarray) -> bytes:
    """A matrix of Python ints of any size (the masked initial share) as JSON."""
    import json
    return json.dumps({"shape": list(values.shape), "values": [str(int(v)) for v in values.reshape(-1)]}).encode()


def _exact_int(value) -> int:
    """An entry of an int matrix: encode_int_matrix writes decimal strings; a float (1.5, Infinity) is refused
    rather than rounded or overflowing."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"entry {shorten(repr(value), 40)} is not an integer")
    return int(value)


def decode_int_matrix(data: bytes, shape: tuple[int, int], max_bits: int) -> np.ndarray:
    import json
    try:
        obj = json.loads(data)
        values = [_exact_int(v) for v in obj["values"]]
        if tuple(obj["shape"]) != shape or len(values) != shape[0] * shape[1]:
            raise ValueError(f"shape {obj['shape']} != {list(shape)}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"setup: invalid masked initial share: {shorten(str(exc), 200)}") from None
    except RecursionError:  # JSON nested thousands deep
        raise ProtocolError("setup: invalid masked initial share: nested too deeply") from None
    if any(abs(v).bit_length() > max_bits for v in values):
        raise ProtocolError(f"setup: masked initial share exceeds {max_bits} bits")
    return np.array(values, dtype=object).reshape(shape)


def encode_ids(ids) -> bytes:
    """IDs to score, as a JSON list of strings."""
    import json
    return json.dumps([str(i) for i in ids]).encode()


def decode_ids(data: bytes, max_ids: int) -> list[str]:
    """The IDs of a ScoreRows, refused unless they are 1..max_ids non-empty strings of at most MAX_ID_CHARS."""
    import json
    try:
        ids = json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError("score: ids are not a JSON list") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_CHARS for i in ids):
        raise ProtocolError(f"score: ids must be a list of non-empty strings of at most {MAX_ID_CHARS} characters")
    if not 0 < len(ids) <= max_ids:
        raise ProtocolError(f"score: {len(ids)} IDs in one call (allowed 1..{max_ids})")
    return ids


def decode_status(data: bytes, count: int) -> np.ndarray:
    """The per-ID status bytes of a ScoreRowsReply: exactly `count`, each a known code."""
    status = np.frombuffer(data, dtype=np.uint8)
    if len(status) != count or (status > ROW_UNAVAILABLE).any():
        raise ProtocolError(f"score reply: {len(status)} status codes for {count} IDs, or an unknown code")
    return status
