"""gRPC servicers of the node. They only authenticate, parse and dispatch: the job runtimes do the work."""
from __future__ import annotations

import grpc

from vfl.transport.chunking import PermissionDenied, stream_handler
from vfl.transport.chunking import unary_handler as _unary_handler
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc


class ControlService(pb_grpc.ControlServicer):
    def __init__(self, node):
        self.node = node
        self.SubmitJob = stream_handler(pb.JobSubmit, self._submit, party=node.config.party)
        self.WatchJob = stream_handler(pb.JobWatch, self._watch, party=node.config.party)

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
            return _unary_handler(request_type, handler, max_bytes=limit, party=node.config.party,
                                  report_timing=node.config.report_handler_timing)

        def on_job(method: str):
            """Find the caller's job, then record the request and the reply in the job's wire ledger."""
            def handle(request, context):
                job = jobs.passive(request.job_id, self.node.caller(context))
                job.ledger.record_message("received", job.active, request)
                reply = getattr(job, method)(request)
                job.ledger.record_message("sent", job.active, reply)
                return reply
            return handle

        def open_job(request, context):
            try:
                caller = self.node.caller(context)
            except PermissionDenied as exc:  # a refused job all the same: its operator wants to see who tried
                jobs.log_open_refused(request, self.node.describe_caller(context), exc)
                raise
            reply = jobs.open_passive(request, caller)
            job = jobs.passive(request.job_id, self.node.caller(context))
            job.ledger.record_message("received", job.active, request)
            job.ledger.record_message("sent", job.active, reply)
            return reply

        def close_job(request, context):
            job = jobs.passive(request.job_id, self.node.caller(context))
            job.ledger.record_message("received", job.active, request)
            return jobs.close_passive(request, self.node.caller(context))

        self.OpenJob = unary_handler(pb.OpenJob, open_job)
        self.Setup = unary_handler(pb.SetupRequest, on_job("setup"))
        self.Forward = unary_handler(pb.ForwardRequest, on_job("forward"))
        self.WeightGradient = unary_handler(pb.WeightGradientRequest, on_job("weight_gradient"))
        self.InputGradient = unary_handler(pb.InputGradientRequest, on_job("input_gradient"))
        self.EndEpoch = unary_handler(pb.EndEpochRequest, on_job("end_epoch"))
        self.CloseJob = unary_handler(pb.CloseJobRequest, close_job)


def add_services(server: grpc.Server, node) -> None:
    pb_grpc.add_ControlServicer_to_server(ControlService(node), server)
    pb_grpc.add_PartyServicer_to_server(PartyService(node), server)
    node.jobs.add_psi_service(server)
