"""gRPC servicers of the node. They only authenticate, parse and dispatch: the job runtimes do the work."""
from __future__ import annotations

import grpc

from vfl.transport.chunking import stream_handler
from vfl.transport.chunking import unary_handler as _unary_handler
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc


class ControlService(pb_grpc.ControlServicer):
    def __init__(self, node):
        self.node = node
        self.SubmitJob = stream_handler(pb.JobSubmit, self._submit)
        self.WatchJob = stream_handler(pb.JobWatch, self._watch)

    def _submit(self, request: pb.JobSubmit, context: grpc.ServicerContext):
        who = self.node.require_admin(context)
        return self.node.jobs.submit(request.spec_yaml, submitted_by=who, cancelled=lambda: not context.is_active())

    def _watch(self, request: pb.JobWatch, context: grpc.ServicerContext):
        self.node.require_admin(context)
        return self.node.jobs.watch(request.job_id, cancelled=lambda: not context.is_active())


class PartyService(pb_grpc.PartyServicer):
    """Calls from the active party of a job to this (passive) party."""

    def __init__(self, node):
        self.node = node
        jobs = node.jobs
        limit = node.config.max_payload_mb << 20

        def unary_handler(request_type, handler):
            return _unary_handler(request_type, handler, max_bytes=limit)
        self.OpenJob = unary_handler(pb.OpenJob, lambda r, c: jobs.open_passive(r, self.node.caller(c)))
        self.Setup = unary_handler(pb.SetupRequest, lambda r, c: jobs.passive(r.job_id, self.node.caller(c)).setup(r))
        self.Forward = unary_handler(pb.ForwardRequest,
                                     lambda r, c: jobs.passive(r.job_id, self.node.caller(c)).forward(r))
        self.WeightGradient = unary_handler(
            pb.WeightGradientRequest, lambda r, c: jobs.passive(r.job_id, self.node.caller(c)).weight_gradient(r))
        self.InputGradient = unary_handler(
            pb.InputGradientRequest, lambda r, c: jobs.passive(r.job_id, self.node.caller(c)).input_gradient(r))
        self.EndEpoch = unary_handler(pb.EndEpochRequest,
                                      lambda r, c: jobs.passive(r.job_id, self.node.caller(c)).end_epoch(r))
        self.CloseJob = unary_handler(pb.CloseJobRequest,
                                      lambda r, c: jobs.close_passive(r, self.node.caller(c)))


def add_services(server: grpc.Server, node) -> None:
    pb_grpc.add_ControlServicer_to_server(ControlService(node), server)
    pb_grpc.add_PartyServicer_to_server(PartyService(node), server)
    node.jobs.add_psi_service(server)
