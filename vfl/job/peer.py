"""The active party's view of one passive party: its link, its half of the interactive layer, the step calls.

Every call goes through `call`, which records the request and the reply in the job's wire ledger and charges the
round trip to the job's timer. The scheme's half (vfl.protocol.schemes) does the crypto; this class only says
which message goes when.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from vfl.errors import ProtocolError
from vfl.job.ledger import WireLedger
from vfl.job.spec import JobSpec
from vfl.job.timing import Timer, TimedOps
from vfl.protocol.layout import Layout
from vfl.protocol.link import PartyLink
from vfl.protocol.messages import (CloseJobReply, CloseJobRequest, EndEpochRequest, ForwardReply, ForwardRequest,
                                   OpenJob, OpenJobReply, Reply, Request, SetupRequest, encode_rows)
from vfl.protocol.schemes import scheme_for
from vfl.protocol.schemes.base import ActiveHalf, Hyper

# Timer labels of a call's round trip (see ActivePeer._add_round_trip)
PEER_WORK = "waiting on peers' work"
TRANSPORT = "transport"
PEER_WORK_AND_TRANSPORT = "peer work + transport"


def hyper_of(spec: JobSpec) -> Hyper:
    t = spec.train
    return Hyper(lr=t.interactive_lr, momentum=t.interactive_momentum, weight_decay=t.weight_decay)


class ActivePeer:
    def __init__(self, peer: str, link: PartyLink, spec: JobSpec, ledger: WireLedger, timer: Timer, compute):
        self.peer, self.link, self.spec = peer, link, spec
        self.ledger, self.timer, self.compute = ledger, timer, compute
        self.scheme = scheme_for(spec.crypto.mode)
        self.half: ActiveHalf | None = None
        self.layout: Layout | None = None
        self.last_call = time.monotonic()

    # ------------------------------------------------------------------ calls
    def call(self, request: Request) -> Reply:
        self.last_call = time.monotonic()  # every call renews the job's lease at the peer
        self.ledger.record_message("sent", self.peer, request)
        peer_seconds: list[float | None] = []
        start = time.perf_counter()
        reply = self.link.call(request, on_handler_seconds=peer_seconds.append)
        self._add_round_trip(time.perf_counter() - start, peer_seconds[0] if peer_seconds else None)
        self.ledger.record_message("received", self.peer, reply)
        return reply

    def _add_round_trip(self, round_trip: float, peer_work: float | None) -> None:
        """Charge one call's round trip: the peer's own work plus transport (serialization, chunking,
        network, queueing). Only a peer that reports its handler time (a benchmark setting) lets us split
        the two; otherwise the whole round trip is charged to one label that says so."""
        if peer_work is None:
            self.timer.add(PEER_WORK_AND_TRANSPORT, round_trip)
            return
        peer_work = min(peer_work, round_trip)
        self.timer.add(PEER_WORK, peer_work)
        self.timer.add(TRANSPORT, round_trip - peer_work)

    # ------------------------------------------------------------------ job lifecycle
    def open(self, spec_yaml: str, resume_epoch: int = -1) -> OpenJobReply:
        return self.call(OpenJob(job_id=self.spec.job_id, spec_yaml=spec_yaml, resume_epoch=resume_epoch))

    def setup(self, layout: Layout, own_key, aligned_rows: int, init_std: float, rng: np.random.Generator,
              restored: dict | None = None) -> None:
        """A fresh half for every set-up: nothing of an earlier one (a prefetched [U] under an old key) survives."""
        if self.half is not None:
            self.half.close()
        self.layout = layout
        self.half = self.scheme.active_half(self.peer, layout, hyper_of(self.spec), own_key,
                                            self.spec.crypto.key_bits, self.compute,
                                            lambda ops: TimedOps(ops, self.timer))
        reply = self.call(SetupRequest(job_id=self.spec.job_id, aligned_rows=aligned_rows, interactive_out=layout.m,
                                       layout=layout.to_json(), **self.half.setup_fields()))
        if reply.bottom_out != layout.d:
            raise ProtocolError(f"setup: {self.peer} reports bottom output {reply.bottom_out}, expected {layout.d}")
        self.half.on_setup(reply, init_std, rng, restored)

    def end_epoch(self, epoch: int, checkpoint: bool) -> str:
        return self.call(EndEpochRequest(job_id=self.spec.job_id, epoch=epoch, checkpoint=checkpoint)).checkpoint

    def close(self, status: str, save_model: bool = False, phase: str = "", reason: str = "") -> CloseJobReply:
        """One close call (vfl.protocol.messages.CloseJobRequest); this link's half is released either way."""
        try:
            return self.call(CloseJobRequest(job_id=self.spec.job_id, status=status, save_model=save_model,
                                             phase=phase, reason=reason))
        finally:
            if self.half is not None:
                self.half.close()

    def state(self) -> dict:
        """What a checkpoint or a model part keeps of this link: the share of W (or W itself in plaintext)."""
        return self.half.state()

    # ------------------------------------------------------------------ one step
    def forward(self, rows: np.ndarray, phase: str, epoch: int, step: int) -> torch.Tensor:
        """z_P = h_P W_P for these rows, as a float tensor (rows x m)."""
        return self.decode_forward(self.request_forward(rows, phase, epoch, step), rows, phase)

    def request_forward(self, rows: np.ndarray, phase: str, epoch: int, step: int) -> ForwardReply:
        """The forward call alone: what the peer computes for these rows (still encrypted)."""
        request = ForwardRequest(job_id=self.spec.job_id, epoch=epoch, step=step, phase=phase,
                                 rows=encode_rows(rows), **self.half.forward_fields())
        return self.call(request)

    def decode_forward(self, reply: ForwardReply, rows: np.ndarray, phase: str) -> torch.Tensor:
        """z_P from the peer's forward reply (decrypted here), as a float tensor (rows x m)."""
        return torch.from_numpy(self.half.decode_forward(reply, len(rows), phase)).float()

    def backward(self, per_example_delta: np.ndarray, epoch: int, step: int,
                 released: np.ndarray | None = None) -> None:
        """Send this passive party its input gradient (`released`, after the defense) and update the shared weight."""
        released = per_example_delta if released is None else released
        self.half.backward(self.call, self.spec.job_id, epoch, step, per_example_delta, released)
