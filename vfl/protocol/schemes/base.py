"""What a scheme of the interactive layer is: an active half and a passive half that talk in typed messages.

A scheme decides how z_P = h_P W_P and the two gradients are computed without either party learning what it must
not (docs/protocol.md). The job runtimes (vfl/job) hold the data, the models and the order of the steps; they call
a half at each step and never branch on the scheme. Two schemes exist: `paillier` (production) and `plaintext`
(insecure split learning, for tests and benchmarks only). A new one is a module here with both halves, its key
exchange, and an entry in `vfl.protocol.schemes.SCHEMES` (docs/architecture.md lists the files it touches).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from vfl.protocol.messages import (ForwardReply, ForwardRequest, InputGradientRequest, Reply, Request, SetupReply,
                                   SetupRequest, WeightGradientReply, WeightGradientRequest)

#: sends one request to the peer and returns its reply (the job's link, with its ledger and timing around it)
Call = Callable[[Request], Reply]
#: wraps a crypto engine, e.g. to charge its heavy calls to the job's timer
OpsWrapper = Callable[[object], object]


class Compute(Protocol):
    """Where a party's keys live and its heavy work runs: the node's compute backend (vfl.compute)."""

    def private_key(self, key_bits: int): ...
    def public_key(self, n: int, djn_base: int, djn_slack_bits: int | None = None): ...


@dataclass(frozen=True)
class Hyper:
    """The interactive weight's optimizer: SGD with momentum and weight decay, the same at both parties."""
    lr: float
    momentum: float
    weight_decay: float


class ActiveHalf(Protocol):
    encrypted: bool

    def setup_fields(self) -> dict: ...
    def on_setup(self, reply: SetupReply, init_std: float, rng: np.random.Generator,
                 restored: dict | None) -> None: ...
    def keep_ready(self, rows: int) -> int: ...  # randomness of a step kept ready; returns own-key encryptions
    def forward_fields(self) -> dict: ...
    def decode_forward(self, reply: ForwardReply, rows: int, phase: str) -> np.ndarray: ...
    def backward(self, call: Call, job_id: str, epoch: int, step: int, per_example: np.ndarray,
                 released: np.ndarray) -> None: ...
    def state(self) -> dict: ...
    def close(self) -> None: ...  # not the own key: the job's, shared by its halves, is closed by the job


class PassiveHalf(Protocol):
    encrypted: bool
    backward_calls: frozenset[str]
    share: object

    def setup(self, req: SetupRequest, init_std: float, rng: np.random.Generator, restored_share) -> dict: ...
    def keep_ready(self, rows: int) -> None: ...  # the randomness of a step of `rows` rows computed ahead
    def forward(self, req: ForwardRequest, h: np.ndarray, train: bool) -> tuple[ForwardReply, object]: ...
    def weight_gradient(self, req: WeightGradientRequest, forward_state, rows: int) -> WeightGradientReply: ...
    def input_gradient(self, req: InputGradientRequest, rows: int) -> np.ndarray: ...
    def close(self) -> None: ...  # ends this party's key of the job
