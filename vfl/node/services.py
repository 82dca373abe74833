"""gRPC servicers of the node. They only authenticate, convert and dispatch: the job registry does the work."""
from __future__ import annotations

import grpc

from vfl.errors import PermissionDenied, VflError, status_of
from vfl.job.spec import parse_job_spec_yaml
from vfl.node.psi_service import add_psi_service
from vfl.protocol.messages import METHOD, REPLY_TO, SCORING_REQUESTS, CloseJobRequest, OpenJob
from vfl.transport import serde
from vfl.transport.chunking import stream_handler
from vfl.transport.chunking import unary_handler as _unary_handler
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc


#: the step calls of a job are bracketed by these in the audit log, not logged one by one
AUDITED = {OpenJob: "job opened", CloseJobRequest: "job closed"}


class ControlService(pb_grpc.ControlServicer):
    """Clients (`vfl run`, `vfl jobs`, `vfl attach`, `vfl cancel`, the Python API) at this node: each call needs
    the caller's role to allow it (node config `roles`, vfl/governance/roles.py)."""

    def __init__(self, node):
        self.node = node
        party = node.config.party
        self.SubmitJob = stream_handler(pb.JobSubmit, self._submit, party=party)
        self.WatchJob = stream_handler(pb.JobWatch, self._watch, party=party)
        self.ListJobs = _unary_handler(pb.JobQuery, self._list, party=party)
        self.ShowJob = _unary_handler(pb.JobQuery, self._show, party=party)
        self.CancelJob = _unary_handler(pb.JobQuery, self._cancel, party=party)

    def _submit(self, request: pb.JobSubmit, context: grpc.ServicerContext):
        # who may submit anything at all, before the spec is read: a stranger's or a reader's text is not parsed
        who = self.node.require_role(context, "submit")
        try:
            spec = parse_job_spec_yaml(request.spec_yaml)
        except VflError as exc:  # the registry refuses it with the same error; the attempt is on record
            self.node.audit.record(who, "job refused", reason=str(exc)[:300])
        else:
            self.node.authorize(who, f"submit:{spec.kind}")
            self.node.audit.record(who, "job submitted", job_id=spec.job_id, kind=spec.kind,
                                   parties=[p.name for p in spec.parties])
        events = self.node.jobs.submit(request.spec_yaml, submitted_by=who, cancelled=lambda: not context.is_active())
        return (serde.event_to_pb(event) for event in events)

    def _watch(self, request: pb.JobWatch, context: grpc.ServicerContext):
        who = self.node.require_role(context, "watch")
        self.node.audit.record(who, "job watched", job_id=request.job_id)
        events = self.node.jobs.watch(request.job_id, cancelled=lambda: not context.is_active())
        return (serde.event_to_pb(event) for event in events)

    def _list(self, request: pb.JobQuery, context: grpc.ServicerContext) -> pb.JobList:
        self.node.require_role(context, "list")
        return pb.JobList(jobs=[serde.job_info_to_pb(info) for info in self.node.jobs.list_jobs()])

    def _show(self, request: pb.JobQuery, context: grpc.ServicerContext) -> pb.JobInfo:
        self.node.require_role(context, "show")
        return serde.job_info_to_pb(self.node.jobs.show_job(request.job_id))

    def _cancel(self, request: pb.JobQuery, context: grpc.ServicerContext) -> pb.JobInfo:
        who = self.node.require_role(context, "cancel")
        by = f"{self.node.config.party}'s operator" if who == "self" else who
        return serde.job_info_to_pb(self.node.jobs.cancel(request.job_id, by=by))


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
            if isinstance(message, SCORING_REQUESTS):   # online scoring: the node's serving side, not a job
                return serde.to_pb(self.node.serving.handle(message, caller))
            if type(message) not in AUDITED:
                return serde.to_pb(jobs.handle(message, caller))
            try:
                reply = jobs.handle(message, caller)
            except Exception as exc:
                self.node.audit.record(caller, f"{AUDITED[type(message)]} refused", job_id=message.job_id,
                                       status=status_of(exc))
                raise
            details = {"resume_epoch": message.resume_epoch} if isinstance(message, OpenJob) else {}
            self.node.audit.record(caller, AUDITED[type(message)], job_id=message.job_id, **details)
            return serde.to_pb(reply)

        for request_type in REPLY_TO:
            method = serde.pb_type(request_type)
            rpc = _unary_handler(method, handle, max_bytes=limit, party=node.config.party,
                                 report_timing=node.config.report_handler_timing)
            setattr(self, METHOD[request_type], rpc)


class ScoringService(pb_grpc.ScoringServicer):
    """Score: clients of the active node score IDs with a served model (vfl/node/serving.py)."""

    def __init__(self, node):
        self.node = node
        self.Score = _unary_handler(pb.ScoreRequest, self._score, max_bytes=4 << 20, party=node.config.party)

    def _score(self, request: pb.ScoreRequest, context: grpc.ServicerContext) -> pb.ScoreReply:
        try:
            who = self.node.require_role(context, "score")   # role predict or train (vfl/governance/roles.py)
        except PermissionDenied as exc:
            self.node.audit.record(self.node.describe_caller(context), "score refused", model=request.model,
                                   ids=len(request.ids), status=status_of(exc))
            raise
        outputs, results = self.node.serving.score(who, request.model, list(request.ids))
        return serde.score_reply_to_pb(request.model, outputs, results)


def add_scoring_service(server: grpc.Server, node) -> None:
    pb_grpc.add_ScoringServicer_to_server(ScoringService(node), server)


def add_services(server: grpc.Server, node) -> None:
    pb_grpc.add_ControlServicer_to_server(ControlService(node), server)
    add_scoring_service(server, node)
    pb_grpc.add_PartyServicer_to_server(PartyService(node), server)
    add_psi_service(server, node.jobs)
