from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Chunk(_message.Message):
    __slots__ = ("data", "last")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    last: bool
    def __init__(self, data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...

class JobSubmit(_message.Message):
    __slots__ = ("spec_yaml",)
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    def __init__(self, spec_yaml: _Optional[str] = ...) -> None: ...

class JobWatch(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobQuery(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "kind", "role", "state", "stage", "created", "updated", "finished", "reason", "active", "detail_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: str
    role: str
    state: str
    stage: str
    created: float
    updated: float
    finished: float
    reason: str
    active: str
    detail_json: str
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[str] = ..., role: _Optional[str] = ..., state: _Optional[str] = ..., stage: _Optional[str] = ..., created: _Optional[float] = ..., updated: _Optional[float] = ..., finished: _Optional[float] = ..., reason: _Optional[str] = ..., active: _Optional[str] = ..., detail_json: _Optional[str] = ...) -> None: ...

class JobList(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "kind", "message", "progress", "stage", "metrics_json", "done", "failed")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: str
    message: str
    progress: float
    stage: str
    metrics_json: str
    done: bool
    failed: bool
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., progress: _Optional[float] = ..., stage: _Optional[str] = ..., metrics_json: _Optional[str] = ..., done: _Optional[bool] = ..., failed: _Optional[bool] = ...) -> None: ...

class OpenJob(_message.Message):
    __slots__ = ("job_id", "spec_yaml", "resume_epoch")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    RESUME_EPOCH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec_yaml: str
    resume_epoch: int
    def __init__(self, job_id: _Optional[str] = ..., spec_yaml: _Optional[str] = ..., resume_epoch: _Optional[int] = ...) -> None: ...

class OpenJobReply(_message.Message):
    __slots__ = ("rows", "feature_dim", "resumable_epoch", "id_shape", "lease_seconds")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DIM_FIELD_NUMBER: _ClassVar[int]
    RESUMABLE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ID_SHAPE_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    feature_dim: int
    resumable_epoch: int
    id_shape: str
    lease_seconds: float
    def __init__(self, rows: _Optional[int] = ..., feature_dim: _Optional[int] = ..., resumable_epoch: _Optional[int] = ..., id_shape: _Optional[str] = ..., lease_seconds: _Optional[float] = ...) -> None: ...

class RenewLease(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class RenewLeaseReply(_message.Message):
    __slots__ = ("lease_seconds",)
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    lease_seconds: float
    def __init__(self, lease_seconds: _Optional[float] = ...) -> None: ...

class SetupRequest(_message.Message):
    __slots__ = ("job_id", "active_public_key", "aligned_rows", "interactive_out", "layout", "active_djn_base")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ALIGNED_ROWS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIVE_OUT_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_DJN_BASE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    active_public_key: bytes
    aligned_rows: int
    interactive_out: int
    layout: bytes
    active_djn_base: bytes
    def __init__(self, job_id: _Optional[str] = ..., active_public_key: _Optional[bytes] = ..., aligned_rows: _Optional[int] = ..., interactive_out: _Optional[int] = ..., layout: _Optional[bytes] = ..., active_djn_base: _Optional[bytes] = ...) -> None: ...

class SetupReply(_message.Message):
    __slots__ = ("passive_public_key", "bottom_out", "init_masked", "passive_djn_base")
    PASSIVE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    BOTTOM_OUT_FIELD_NUMBER: _ClassVar[int]
    INIT_MASKED_FIELD_NUMBER: _ClassVar[int]
    PASSIVE_DJN_BASE_FIELD_NUMBER: _ClassVar[int]
    passive_public_key: bytes
    bottom_out: int
    init_masked: bytes
    passive_djn_base: bytes
    def __init__(self, passive_public_key: _Optional[bytes] = ..., bottom_out: _Optional[int] = ..., init_masked: _Optional[bytes] = ..., passive_djn_base: _Optional[bytes] = ...) -> None: ...

class ForwardRequest(_message.Message):
    __slots__ = ("job_id", "epoch", "step", "phase", "rows", "u_ciphertexts")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    U_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    step: int
    phase: str
    rows: bytes
    u_ciphertexts: bytes
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., step: _Optional[int] = ..., phase: _Optional[str] = ..., rows: _Optional[bytes] = ..., u_ciphertexts: _Optional[bytes] = ...) -> None: ...

class ForwardReply(_message.Message):
    __slots__ = ("z_ciphertexts", "v_ciphertexts", "h_plain")
    Z_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    V_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    H_PLAIN_FIELD_NUMBER: _ClassVar[int]
    z_ciphertexts: bytes
    v_ciphertexts: bytes
    h_plain: bytes
    def __init__(self, z_ciphertexts: _Optional[bytes] = ..., v_ciphertexts: _Optional[bytes] = ..., h_plain: _Optional[bytes] = ...) -> None: ...

class WeightGradientRequest(_message.Message):
    __slots__ = ("job_id", "epoch", "step", "delta_ciphertexts")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DELTA_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    step: int
    delta_ciphertexts: bytes
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., step: _Optional[int] = ..., delta_ciphertexts: _Optional[bytes] = ...) -> None: ...

class WeightGradientReply(_message.Message):
    __slots__ = ("masked_gradient",)
    MASKED_GRADIENT_FIELD_NUMBER: _ClassVar[int]
    masked_gradient: bytes
    def __init__(self, masked_gradient: _Optional[bytes] = ...) -> None: ...

class InputGradientRequest(_message.Message):
    __slots__ = ("job_id", "epoch", "step", "grad_ciphertexts", "grad_plain")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    GRAD_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    GRAD_PLAIN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    step: int
    grad_ciphertexts: bytes
    grad_plain: bytes
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., step: _Optional[int] = ..., grad_ciphertexts: _Optional[bytes] = ..., grad_plain: _Optional[bytes] = ...) -> None: ...

class InputGradientReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EndEpochRequest(_message.Message):
    __slots__ = ("job_id", "epoch", "checkpoint")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    checkpoint: bool
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., checkpoint: _Optional[bool] = ...) -> None: ...

class EndEpochReply(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    def __init__(self, checkpoint: _Optional[str] = ...) -> None: ...

class CloseJobRequest(_message.Message):
    __slots__ = ("job_id", "status", "save_model", "phase", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SAVE_MODEL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    status: str
    save_model: bool
    phase: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., status: _Optional[str] = ..., save_model: _Optional[bool] = ..., phase: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CloseJobReply(_message.Message):
    __slots__ = ("model_path", "report_json")
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    model_path: str
    report_json: bytes
    def __init__(self, model_path: _Optional[str] = ..., report_json: _Optional[bytes] = ...) -> None: ...

class OpenScoring(_message.Message):
    __slots__ = ("model_id", "layout", "active_public_key", "active_djn_base", "u_ciphertexts")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_DJN_BASE_FIELD_NUMBER: _ClassVar[int]
    U_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    layout: bytes
    active_public_key: bytes
    active_djn_base: bytes
    u_ciphertexts: bytes
    def __init__(self, model_id: _Optional[str] = ..., layout: _Optional[bytes] = ..., active_public_key: _Optional[bytes] = ..., active_djn_base: _Optional[bytes] = ..., u_ciphertexts: _Optional[bytes] = ...) -> None: ...

class OpenScoringReply(_message.Message):
    __slots__ = ("session", "max_ids")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_IDS_FIELD_NUMBER: _ClassVar[int]
    session: str
    max_ids: int
    def __init__(self, session: _Optional[str] = ..., max_ids: _Optional[int] = ...) -> None: ...

class ScoreRows(_message.Message):
    __slots__ = ("session", "ids")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    session: str
    ids: bytes
    def __init__(self, session: _Optional[str] = ..., ids: _Optional[bytes] = ...) -> None: ...

class ScoreRowsReply(_message.Message):
    __slots__ = ("z_ciphertexts", "status")
    Z_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    z_ciphertexts: bytes
    status: bytes
    def __init__(self, z_ciphertexts: _Optional[bytes] = ..., status: _Optional[bytes] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("model", "ids")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class IdScore(_message.Message):
    __slots__ = ("id", "status", "scores", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    detail: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ..., detail: _Optional[str] = ...) -> None: ...

class ScoreReply(_message.Message):
    __slots__ = ("model", "outputs", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    outputs: _containers.RepeatedScalarFieldContainer[str]
    results: _containers.RepeatedCompositeFieldContainer[IdScore]
    def __init__(self, model: _Optional[str] = ..., outputs: _Optional[_Iterable[str]] = ..., results: _Optional[_Iterable[_Union[IdScore, _Mapping]]] = ...) -> None: ...
