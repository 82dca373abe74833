"""Plaintext split learning: the passive party sends h, the active party holds W and sends back delta W^T.

Insecure by design (the active party sees every activation), for tests and benchmarks only: a passive node refuses
it unless its own policy allows it (node config `policy.allow_plaintext`).
"""
from __future__ import annotations

import numpy as np
import torch

from vfl.errors import ProtocolError
from vfl.protocol.layout import Layout
from vfl.protocol.messages import (ForwardReply, ForwardRequest, InputGradientRequest, SetupReply, SetupRequest,
                                   WeightGradientReply, WeightGradientRequest, decode_floats, encode_floats)
from vfl.protocol.schemes.base import Call, Hyper

NAME = "plaintext"


def new_key(key_bits: int, compute) -> None:
    return None


class ActiveHalf:
    """W in the clear at the active party, trained with the same SGD the shares follow in the Paillier scheme."""

    encrypted = False

    def __init__(self, peer: str, layout: Layout, hyper: Hyper, own_key, key_bits: int, compute, wrap_ops):
        self.peer, self.layout, self.hyper = peer, layout, hyper
        self.weight: torch.Tensor | None = None
        self.velocity: torch.Tensor | None = None
        self._h: torch.Tensor | None = None

    def setup_fields(self) -> dict:
        return {}

    def keep_ready(self, rows: int) -> int:
        return 0   # nothing is encrypted

    def on_setup(self, reply: SetupReply, init_std: float, rng: np.random.Generator, restored: dict | None) -> None:
        if restored is not None and restored.get("plain") is not None:
            w = restored["plain"]
            velocity = restored.get("velocity")  # a resume continues SGD's momentum, as the Paillier shares do
            self.velocity = velocity.clone() if velocity is not None else None
        else:
            w = torch.from_numpy(rng.normal(0.0, init_std, size=(self.layout.d, self.layout.m)))
        self.weight = w.clone().float()

    def forward_fields(self) -> dict:
        return {}

    def decode_forward(self, reply: ForwardReply, rows: int, phase: str) -> np.ndarray:
        h = decode_floats(reply.h_plain, (rows, self.layout.d), f"forward: {self.peer} sent h")
        self._h = torch.from_numpy(h).float()
        return (self._h @ self.weight).numpy().astype(np.float64)

    def backward(self, call: Call, job_id: str, epoch: int, step: int, per_example: np.ndarray,
                 released: np.ndarray) -> None:
        rows = per_example.shape[0]
        grad_h = torch.from_numpy(released / rows).float() @ self.weight.T
        call(InputGradientRequest(job_id=job_id, epoch=epoch, step=step, grad_plain=encode_floats(grad_h.numpy())))
        self._update(self._h.T @ torch.from_numpy(per_example / rows).float())

    def _update(self, grad_w: torch.Tensor) -> None:
        h = self.hyper
        self.velocity = grad_w if self.velocity is None else h.momentum * self.velocity + grad_w
        self.weight = self.weight - h.lr * self.velocity - h.lr * h.weight_decay * self.weight

    def state(self) -> dict:
        return {"share": None, "plain": self.weight.clone(),
                "velocity": self.velocity.clone() if self.velocity is not None else None}

    def close(self) -> None:
        pass


class PassiveHalf:
    encrypted = False
    backward_calls = frozenset({"input gradient"})

    def __init__(self, layout: Layout, hyper: Hyper, key_bits: int, compute, wrap_ops):
        self.layout = layout
        self.share = None

    def setup(self, req: SetupRequest, init_std: float, rng: np.random.Generator, restored_share) -> dict:
        return {}

    def keep_ready(self, rows: int) -> None:
        pass

    def forward(self, req: ForwardRequest, h: np.ndarray, train: bool) -> tuple[ForwardReply, object]:
        bound = self.layout.activation_bound
        return ForwardReply(h_plain=encode_floats(np.clip(h, -bound, bound))), None

    def weight_gradient(self, req: WeightGradientRequest, forward_state, rows: int) -> WeightGradientReply:
        raise ProtocolError("weight gradient: not used in plaintext mode")

    def input_gradient(self, req: InputGradientRequest, rows: int) -> np.ndarray:
        return decode_floats(req.grad_plain, (rows, self.layout.d), "input gradient: grad_plain")

    def close(self) -> None:
        pass
