"""gRPC servicers of the node. They only authenticate, convert and dispatch: the job registry does the work."""
from __future__ import annotations

import grpc

from vfl.errors import PermissionDenied
from vfl.node.psi_service import add_psi_service
from vfl.protocol.messages import METHOD, REPLY_TO
from vfl.transport import serde
from vfl.transport.chunking import stream_handler
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
        events = self.node.jobs.submit(request.spec_yaml, submitted_by=who, cancelled=lambda: not context.is_active())
        return (serde.event_to_pb(event) for event in events)

    def _watch(self, request: pb.JobWatch, context: grpc.ServicerContext):
        self.node.require_admin(context)
        events = self.node.jobs.watch(request.job_id, cancelled=lambda: not context.is_active())
        return (serde.event_to_pb(event) for event in events)


class PartyService(pb_grpc.PartyServicer):
    """Calls from the active party of a job to this (passive) party."""

    def __init__(self, node):
        self.node = node
        jobs = node.jobs
        limit = node.config.max_payload_mb << 20

        def handle(request, context):
            message = serde.from_pb(request)
            try:
                caller = self.node.caller(context)
            except PermissionDenied as exc:  # a refused job all the same: its operator wants to see who tried
                if request.DESCRIPTOR.name == "OpenJob":
                    jobs.log_open_refused(message, self.node.describe_caller(context), exc)
                raise
            return serde.to_pb(jobs.handle(message, caller))

        for request_type in REPLY_TO:
            method = serde.pb_type(request_type)
            rpc = _unary_handler(method, handle, max_bytes=limit, party=node.config.party,
                                 report_timing=node.config.report_handler_timing)
            setattr(self, METHOD[request_type], rpc)


def add_services(server: grpc.Server, node) -> None:
    pb_grpc.add_ControlServicer_to_server(ControlService(node), server)
    pb_grpc.add_PartyServicer_to_server(PartyService(node), server)
    add_psi_service(server, node.jobs)
