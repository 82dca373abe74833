"""Typed messages (vfl.protocol.messages, vfl.job.events) <-> node.proto, field for field.

The only place that knows both: the runtimes never see protobuf, and the protobuf never reaches a runtime.
"""
from __future__ import annotations

import dataclasses
import json

from vfl.protocol.messages import MESSAGE_TYPES
from vfl.transport.proto import node_pb2 as pb


def to_pb(message):
    """The protobuf message of the same name, with the same fields."""
    return getattr(pb, type(message).__name__)(**dataclasses.asdict(message))


def from_pb(message):
    """The typed message of the same name; proto3 gives every unset field its default, as the dataclass does."""
    cls = MESSAGE_TYPES[type(message).DESCRIPTOR.name]
    return cls(**{f.name: getattr(message, f.name) for f in dataclasses.fields(cls)})


def pb_type(message_type: type):
    """The protobuf class of a typed message class."""
    return getattr(pb, message_type.__name__)


def event_to_pb(event) -> pb.JobEvent:
    return pb.JobEvent(job_id=event.job_id, kind=event.kind, message=event.message, stage=event.stage,
                       progress=event.progress, metrics_json=json.dumps(event.metrics, default=str),
                       done=event.done, failed=event.failed)


JOB_INFO_FIELDS = ("job_id", "kind", "role", "state", "stage", "reason", "active")
JOB_INFO_TIMES = ("created", "updated", "finished")


def job_info_to_pb(info: dict) -> pb.JobInfo:
    """A job's status (vfl/job/status.py) as JobInfo; everything else it holds goes to detail_json."""
    detail = {k: v for k, v in info.items() if k not in JOB_INFO_FIELDS + JOB_INFO_TIMES}
    return pb.JobInfo(**{k: str(info.get(k) or "") for k in JOB_INFO_FIELDS},
                      **{k: float(info.get(k) or 0.0) for k in JOB_INFO_TIMES},
                      detail_json=json.dumps(detail, default=str))


def job_info_from_pb(message: pb.JobInfo) -> dict:
    info = {k: getattr(message, k) for k in JOB_INFO_FIELDS + JOB_INFO_TIMES}
    info.update(json.loads(message.detail_json or "{}"))
    return info


def score_reply_to_pb(model: str, outputs, results) -> pb.ScoreReply:
    """The Score RPC's reply from the active node's results (vfl.job.serving.IdScore, one per ID)."""
    return pb.ScoreReply(model=model, outputs=list(outputs),
                         results=[pb.IdScore(id=r.id, status=r.status, scores=list(r.scores), detail=r.detail)
                                  for r in results])


def score_reply_from_pb(message: pb.ScoreReply) -> dict:
    return {"model": message.model, "outputs": list(message.outputs),
            "results": [{"id": r.id, "status": r.status, "scores": list(r.scores), "detail": r.detail}
                        for r in message.results]}
