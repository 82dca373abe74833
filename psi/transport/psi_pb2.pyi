from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    INTERSECTION: _ClassVar[Mode]
    CARDINALITY: _ClassVar[Mode]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    BLINDED: _ClassVar[Stage]
    DOUBLE: _ClassVar[Stage]
    ALIGN: _ClassVar[Stage]
    KEY: _ClassVar[Stage]
    QUERY: _ClassVar[Stage]
    REPLY: _ClassVar[Stage]
    OKVS: _ClassVar[Stage]
MODE_UNSPECIFIED: Mode
INTERSECTION: Mode
CARDINALITY: Mode
STAGE_UNSPECIFIED: Stage
BLINDED: Stage
DOUBLE: Stage
ALIGN: Stage
KEY: Stage
QUERY: Stage
REPLY: Stage
OKVS: Stage

class Envelope(_message.Message):
    __slots__ = ("session_id", "hello", "hello_reply", "roster", "chunk", "sealed", "count", "done", "abort", "table", "resume")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HELLO_REPLY_FIELD_NUMBER: _ClassVar[int]
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    hello: Hello
    hello_reply: HelloReply
    roster: Roster
    chunk: Chunk
    sealed: Sealed
    count: Count
    done: Done
    abort: Abort
    table: Table
    resume: Resume
    def __init__(self, session_id: _Optional[str] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., hello_reply: _Optional[_Union[HelloReply, _Mapping]] = ..., roster: _Optional[_Union[Roster, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ..., sealed: _Optional[_Union[Sealed, _Mapping]] = ..., count: _Optional[_Union[Count, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ..., table: _Optional[_Union[Table, _Mapping]] = ..., resume: _Optional[_Union[Resume, _Mapping]] = ...) -> None: ...

class Resume(_message.Message):
    __slots__ = ("recipient", "received")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    recipient: str
    received: int
    def __init__(self, recipient: _Optional[str] = ..., received: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("version", "salt", "strip", "lowercase", "mode", "parties", "recipient", "size", "chunk_size", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    STRIP_FIELD_NUMBER: _ClassVar[int]
    LOWERCASE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    version: int
    salt: bytes
    strip: bool
    lowercase: bool
    mode: Mode
    parties: _containers.RepeatedScalarFieldContainer[str]
    recipient: str
    size: int
    chunk_size: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, version: _Optional[int] = ..., salt: _Optional[bytes] = ..., strip: _Optional[bool] = ..., lowercase: _Optional[bool] = ..., mode: _Optional[_Union[Mode, str]] = ..., parties: _Optional[_Iterable[str]] = ..., recipient: _Optional[str] = ..., size: _Optional[int] = ..., chunk_size: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("size", "ephemeral_key")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_KEY_FIELD_NUMBER: _ClassVar[int]
    size: int
    ephemeral_key: bytes
    def __init__(self, size: _Optional[int] = ..., ephemeral_key: _Optional[bytes] = ...) -> None: ...

class Roster(_message.Message):
    __slots__ = ("sizes", "keys")
    class SizesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SIZES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    sizes: _containers.ScalarMap[str, int]
    keys: _containers.ScalarMap[str, bytes]
    def __init__(self, sizes: _Optional[_Mapping[str, int]] = ..., keys: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("stage", "index", "count", "data")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    index: int
    count: int
    data: bytes
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., index: _Optional[int] = ..., count: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Sealed(_message.Message):
    __slots__ = ("stage", "sender", "recipient", "index", "count", "ciphertext")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    sender: str
    recipient: str
    index: int
    count: int
    ciphertext: bytes
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., sender: _Optional[str] = ..., recipient: _Optional[str] = ..., index: _Optional[int] = ..., count: _Optional[int] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class Table(_message.Message):
    __slots__ = ("attempt", "cells")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    cells: int
    def __init__(self, attempt: _Optional[int] = ..., cells: _Optional[int] = ...) -> None: ...

class Count(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("count", "digest")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    count: int
    digest: bytes
    def __init__(self, count: _Optional[int] = ..., digest: _Optional[bytes] = ...) -> None: ...

class Abort(_message.Message):
    __slots__ = ("code", "reason")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
