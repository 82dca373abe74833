"""The active party's link to one passive party: RPC calls plus its half of the interactive-layer protocol."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from vfl.errors import ProtocolError
from vfl.job import crypto
from vfl.job.ledger import WireLedger
from vfl.job.timing import Timer, TimedOps
from vfl.job.passive import decode_int_matrix
from vfl.protocol import interactive as proto
from vfl.protocol.layout import Layout
from vfl.transport.chunking import call_unary
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc


# Timer labels of a call's round trip (see PassiveLink._add_round_trip)
PEER_WORK = "waiting on peers' work"
TRANSPORT = "transport"
PEER_WORK_AND_TRANSPORT = "peer work + transport"


class PassiveLink:
    def __init__(self, node, peer: str, spec, ledger: WireLedger, timer: Timer, timeout: float = 600.0):
        self.node = node
        self.timer = timer
        self.peer = peer
        self.spec = spec
        self.ledger = ledger
        self.timeout = timeout
        self.stub = pb_grpc.PartyStub(node.channel(peer))
        self.paillier = spec.crypto.mode == "paillier"
        self.share: proto.WeightShare | None = None
        self.plain_weight: torch.nn.Parameter | None = None
        self.layout: Layout | None = None
        self._next_u: bytes | None = None
        self.calls = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"link-{peer}")

    def _call(self, name: str, request, reply_type):
        method = getattr(self.stub, name)
        self.ledger.record_message("sent", self.peer, request)

        def invoke(chunks, timeout):
            return method(chunks, timeout=timeout, metadata=self.node.call_metadata())
        peer_seconds: list[float | None] = []
        start = time.perf_counter()
        reply = call_unary(self.peer, name, invoke, request, reply_type, timeout=self.timeout,
                           on_handler_seconds=peer_seconds.append)
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
    def open(self, spec_yaml: str, resume_epoch: int = -1) -> pb.OpenJobReply:
        return self._call("OpenJob", pb.OpenJob(job_id=self.spec.job_id, spec_yaml=spec_yaml,
                                               resume_epoch=resume_epoch), pb.OpenJobReply)

    def setup(self, layout: Layout, ops_a, aligned_rows: int, init_std: float, rng: np.random.Generator,
              restored_share=None, restored_plain=None) -> None:
        self.layout = layout
        # A [U] prefetched before a failure is under the old key and the un-restored share: never send it.
        self._next_u = None
        req = pb.SetupRequest(job_id=self.spec.job_id, aligned_rows=aligned_rows,
                              interactive_out=layout.m, layout=layout.to_json())
        if self.paillier:
            req.active_public_key = crypto.public_key_bytes(ops_a)
            req.active_djn_base = crypto.djn_base_bytes(ops_a)
        reply = self._call("Setup", req, pb.SetupReply)
        if reply.bottom_out != layout.d:
            raise ProtocolError(f"setup: {self.peer} reports bottom output {reply.bottom_out}, expected {layout.d}")
        if not self.paillier:
            w = restored_plain if restored_plain is not None else \
                torch.from_numpy(rng.normal(0.0, init_std, size=(layout.d, layout.m)))
            self.plain_weight = torch.nn.Parameter(w.clone().float())
            return
        self.ops_a = TimedOps(ops_a, self.timer)
        self.ops_p = TimedOps(crypto.public_ops_from_bytes(reply.passive_public_key, reply.passive_djn_base,
                                                           self.spec.crypto.key_bits,
                                                           self.node.config.workers,
                                                           layout.exponent_sum_bits()), self.timer)
        if restored_share is not None:
            self.share = restored_share
        else:
            masked = decode_int_matrix(reply.init_masked, (layout.d, layout.m), proto.share_bits(layout) + 2)
            self.share = proto.active_init(layout, init_std, masked, rng)

    def end_epoch(self, epoch: int, checkpoint: bool) -> str:
        return self._call("EndEpoch", pb.EndEpochRequest(job_id=self.spec.job_id, epoch=epoch,
                                                        checkpoint=checkpoint), pb.EndEpochReply).checkpoint

    def close(self, status: str, save_model: bool) -> pb.CloseJobReply:
        return self._call("CloseJob", pb.CloseJobRequest(job_id=self.spec.job_id, status=status,
                                                        save_model=save_model), pb.CloseJobReply)

    # ------------------------------------------------------------------ one step
    def forward(self, rows: np.ndarray, phase: str, epoch: int, step: int) -> torch.Tensor:
        """z_P = h_P W_P for these rows, as a float tensor (rows x m)."""
        layout = self.layout
        req = pb.ForwardRequest(job_id=self.spec.job_id, epoch=epoch, step=step, phase=phase,
                                rows=np.asarray(rows, dtype="<i4").tobytes())
        if self.paillier:
            if self._next_u is None:
                self._prepare_weight_bases()
            req.u_ciphertexts, self._next_u = self._next_u, None
        reply = self._call("Forward", req, pb.ForwardReply)
        n = len(rows)
        if not self.paillier:
            if len(reply.h_plain) != n * layout.d * 4:
                raise ProtocolError(f"forward: {self.peer} sent {len(reply.h_plain)} bytes of h, "
                                    f"expected {n}x{layout.d} float32")
            self._h = torch.from_numpy(np.frombuffer(reply.h_plain, dtype="<f4").reshape(n, layout.d).copy())
            return (self._h @ self.plain_weight).detach()
        z_cts = crypto.from_bytes(self.ops_a, reply.z_ciphertexts, layout.forward_layout().ciphertexts_for(n),
                                  f"forward reply from {self.peer}")
        if phase == "train":
            self._v_bases = crypto.from_bytes(self.ops_p, reply.v_ciphertexts,
                                              layout.m * layout.backward_layout().groups,
                                              f"forward reply from {self.peer} (v_ciphertexts)")
        z = proto.active_decode_forward(self.ops_a, z_cts, n, layout)
        return torch.from_numpy(z).float()

    def backward(self, per_example_delta: np.ndarray, epoch: int, step: int,
                 released: np.ndarray | None = None) -> None:
        """Send this passive party its input gradient and update the shared weight.

        The weight-gradient call goes first and runs at the passive party while this party computes the
        input gradient; this party then decrypts its gradient share and prepares the next batch's [U]
        while the passive party decrypts its input gradient.
        """
        layout = self.layout
        rows = per_example_delta.shape[0]
        released = per_example_delta if released is None else released
        if not self.paillier:
            grad_h = torch.from_numpy(released / rows).float() @ self.plain_weight.detach().T
            req = pb.InputGradientRequest(job_id=self.spec.job_id, epoch=epoch, step=step,
                                          grad_plain=grad_h.numpy().astype("<f4").tobytes())
            self._call("InputGradient", req, pb.InputGradientReply)
            grad_w = self._h.T @ torch.from_numpy(per_example_delta / rows).float()
            self._plain_update(grad_w)
            return
        d_int = proto.encode_gradients(per_example_delta, layout)
        released_int = d_int if released is per_example_delta else proto.encode_gradients(released, layout)
        weight_req = pb.WeightGradientRequest(job_id=self.spec.job_id, epoch=epoch, step=step,
                                              delta_ciphertexts=crypto.to_bytes(
                                                  self.ops_a, proto.active_encrypt_gradients(self.ops_a, d_int, layout)))
        weight_call = self.calls.submit(self._call, "WeightGradient", weight_req, pb.WeightGradientReply)
        grad_cts = proto.active_input_gradient(self.ops_p, self._v_bases, released_int, self.share, layout)
        input_req = pb.InputGradientRequest(job_id=self.spec.job_id, epoch=epoch, step=step,
                                            grad_ciphertexts=crypto.to_bytes(self.ops_p, grad_cts))
        input_call = self.calls.submit(self._call, "InputGradient", input_req, pb.InputGradientReply)
        try:
            reply = weight_call.result()
            per_row = -(-layout.m // layout.gradient_layout().width)
            masked = crypto.from_bytes(self.ops_a, reply.masked_gradient, layout.d * per_row,
                                       f"weight gradient reply from {self.peer}")
            share = proto.active_decode_weight_gradient(self.ops_a, masked, layout)
            t = self.spec.train
            proto.apply_update(self.share, share, rows, t.interactive_lr, t.interactive_momentum,
                               t.weight_decay, layout)
            self._prepare_weight_bases()
        finally:
            input_call.result()

    def _prepare_weight_bases(self) -> None:
        """Encrypt [U] for the next forward call now, while the passive party is busy."""
        u_rows = proto.product_weights(self.share.weights, self.layout)
        self._next_u = crypto.to_bytes(self.ops_a, proto.weight_bases(self.ops_a, u_rows, self.layout.forward_layout()))

    def _plain_update(self, grad_w: torch.Tensor) -> None:
        """Plaintext baseline: the same SGD with momentum, on a weight the active party holds in the clear."""
        t = self.spec.train
        if not hasattr(self, "_velocity"):
            self._velocity = torch.zeros_like(grad_w)
        self._velocity = t.interactive_momentum * self._velocity + grad_w
        with torch.no_grad():
            self.plain_weight -= t.interactive_lr * self._velocity + t.interactive_lr * t.weight_decay * self.plain_weight
