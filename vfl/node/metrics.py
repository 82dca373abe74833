"""A node's Prometheus metrics (prometheus-client), served on node.yaml's `metrics_listen` (off by default).

- `vfl_jobs{role, state}`: the jobs this node holds, by role and state (read from the job registry at scrape time);
- `vfl_rpc_seconds{service, method}` and `vfl_rpc_errors_total{service, method, code}`: every RPC this node served,
  its latency and its failures (PSI sessions are the `Psi/Session` RPC: their latency is the PSI time);
- `vfl_bytes_total{peer, direction, service}`: bytes received from and sent to each peer, on this node's server
  and on its own calls to peers;
- `vfl_crypto_seconds_total{role, operation}`: Paillier time (encrypt, decrypt, matrix products) of finished
  and running jobs, from each job's timer;
- `vfl_epsilon{job_id}`: the differential-privacy epsilon each job spent, from its privacy report.

Every series is this node's own: the endpoint is plain HTTP for the party's own Prometheus, and the chart's
NetworkPolicy admits only the namespaces its values name. Nothing here is sent to a peer.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Iterable

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("vfl.metrics")

#: privacy reports read per scrape: the most recent jobs' (each job's epsilon is final once it closed)
EPSILON_JOBS = 200


def _split_method(full: str) -> tuple[str, str]:
    """'/vfl.Party/Forward' -> ('Party', 'Forward')."""
    _, _, rest = full.partition("/")
    service, _, method = rest.partition("/")
    return service.rsplit(".", 1)[-1], method


def _message_bytes(message) -> int:
    size = getattr(message, "ByteSize", None)
    return int(size()) if size else len(message) if isinstance(message, (bytes, bytearray)) else 0


class NodeMetrics:
    """The node's metric families on a registry of its own (several nodes may share a test process)."""

    def __init__(self, node):
        self.node = node
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpc_seconds = Histogram("vfl_rpc_seconds", "Latency of RPCs this node served", ["service", "method"],
                                     registry=self.registry,
                                     buckets=(0.005, 0.02, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800))
        self.rpc_errors = Counter("vfl_rpc_errors_total", "RPCs this node served that failed",
                                  ["service", "method", "code"], registry=self.registry)
        self.bytes = Counter("vfl_bytes_total", "Bytes exchanged with each peer", ["peer", "direction", "service"],
                             registry=self.registry)
        self.registry.register(_JobCollector(node))
        self._server = None

    # -------------------------------------------------------------- HTTP endpoint
    def serve(self, address: str) -> int:
        """Serve /metrics on host:port; returns the bound port."""
        from prometheus_client import start_http_server
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry)
        self._server = server
        return server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -------------------------------------------------------------- interceptors
    def server_interceptor(self, caller_of: Callable[[grpc.ServicerContext], str]) -> grpc.ServerInterceptor:
        return _ServerMetrics(self, caller_of)

    def count(self, peer: str, direction: str, service: str, nbytes: int) -> None:
        if nbytes:
            self.bytes.labels(peer, direction, service).inc(nbytes)

    def channel(self, channel: grpc.Channel, peer: str) -> grpc.Channel:
        """`channel` with this node's own calls to `peer` counted."""
        return grpc.intercept_channel(channel, _ClientMetrics(self, peer))


class _ServerMetrics(grpc.ServerInterceptor):
    def __init__(self, metrics: NodeMetrics, caller_of):
        self.metrics, self.caller_of = metrics, caller_of

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split_method(handler_call_details.method)
        m = self.metrics

        def peer(context) -> str:
            try:
                return self.caller_of(context)
            except Exception:  # noqa: BLE001 - a refused caller is counted as such
                return "refused"

        def counted_in(requests: Iterable, who: str) -> Iterable:
            for request in requests:
                m.count(who, "received", service, _message_bytes(request))
                yield request

        def failed(context, exc: BaseException | None) -> str | None:
            """The status of a finished call: the code the handler set (abort), else the exception's kind."""
            code = context.code() if hasattr(context, "code") else None
            if isinstance(code, grpc.StatusCode):
                return None if code == grpc.StatusCode.OK else code.name
            return None if exc is None else type(exc).__name__

        def finish(context, start: float, exc: BaseException | None) -> None:
            m.rpc_seconds.labels(service, method).observe(time.perf_counter() - start)
            code = failed(context, exc)
            if code is not None:
                m.rpc_errors.labels(service, method, code).inc()

        def counted_out(replies: Iterable, who: str, start: float, context) -> Iterable:
            error = None
            try:
                for reply in replies:
                    m.count(who, "sent", service, _message_bytes(reply))
                    yield reply
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(context, start, error)

        def wrap(behavior, stream_in: bool, stream_out: bool):
            def handle(request, context):
                start, who = time.perf_counter(), peer(context)
                if stream_in:
                    request = counted_in(request, who)
                else:
                    m.count(who, "received", service, _message_bytes(request))
                try:
                    result = behavior(request, context)
                except BaseException as exc:
                    finish(context, start, exc)
                    raise
                if stream_out:
                    return counted_out(result, who, start, context)
                m.count(who, "sent", service, _message_bytes(result))
                finish(context, start, None)
                return result
            return handle

        kinds = {(False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
                 (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
                 (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
                 (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler)}
        key = (handler.request_streaming, handler.response_streaming)
        attr, make = kinds[key]
        return make(wrap(getattr(handler, attr), *key), request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


class _ClientMetrics(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor,
                     grpc.UnaryStreamClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Bytes of this node's own calls to one peer (the active party's requests and the replies it receives)."""

    def __init__(self, metrics: NodeMetrics, peer: str):
        self.metrics, self.peer = metrics, peer

    def _out(self, requests: Iterable, service: str) -> Iterable:
        for request in requests:
            self.metrics.count(self.peer, "sent", service, _message_bytes(request))
            yield request

    def _in(self, replies, service: str):
        for reply in replies:
            self.metrics.count(self.peer, "received", service, _message_bytes(reply))
            yield reply

    def intercept_unary_unary(self, continuation, details, request):
        service, _ = _split_method(details.method)
        self.metrics.count(self.peer, "sent", service, _message_bytes(request))
        outcome = continuation(details, request)
        try:
            self.metrics.count(self.peer, "received", service, _message_bytes(outcome.result()))
        except Exception:  # noqa: BLE001 - the caller sees the error from the outcome itself
            pass
        return outcome

    def intercept_stream_stream(self, continuation, details, request_iterator):
        service, _ = _split_method(details.method)
        return _CountedStream(continuation(details, self._out(request_iterator, service)), self, service)

    def intercept_unary_stream(self, continuation, details, request):
        service, _ = _split_method(details.method)
        self.metrics.count(self.peer, "sent", service, _message_bytes(request))
        return _CountedStream(continuation(details, request), self, service)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        service, _ = _split_method(details.method)
        return continuation(details, self._out(request_iterator, service))


class _CountedStream:
    """A response stream (also a grpc.Call) whose messages are counted as they are read."""

    def __init__(self, call, interceptor: _ClientMetrics, service: str):
        self._call, self._interceptor, self._service = call, interceptor, service

    def __iter__(self):
        return self

    def __next__(self):
        reply = next(self._call)
        self._interceptor.metrics.count(self._interceptor.peer, "received", self._service, _message_bytes(reply))
        return reply

    def __getattr__(self, name):
        return getattr(self._call, name)


class _JobCollector:
    """Job states, crypto time and epsilon, read from the registry and the jobs directory at each scrape."""

    def __init__(self, node):
        self.node = node
        self._lock = threading.Lock()

    def describe(self):
        return []

    def collect(self):
        jobs = GaugeMetricFamily("vfl_jobs", "Jobs at this node by role and state", labels=["role", "state"])
        crypto = GaugeMetricFamily("vfl_crypto_seconds_total", "Paillier seconds of this node's jobs",
                                   labels=["role", "operation"])
        epsilon = GaugeMetricFamily("vfl_epsilon", "Differential-privacy epsilon each job spent", labels=["job_id"])
        counts: dict[tuple[str, str], int] = {}
        seconds: dict[tuple[str, str], float] = {}
        registry = getattr(self.node, "jobs", None)
        if registry is not None:
            with registry._lock:
                active = dict(registry.active_events)
                passive = dict(registry.passive_jobs)
                timers = dict(getattr(registry, "active_timers", {}))
            for job_id, events in active.items():
                last = events.last()
                # a finished job's last event says how it ended (result, error, cancelled, suspended)
                state = "running" if not events.finished else \
                    {"result": "succeeded", "cancelled": "cancelled", "suspended": "suspended"}.get(last.kind, "failed")
                counts[("active", state)] = counts.get(("active", state), 0) + 1
            for job in passive.values():
                state = getattr(getattr(job, "state", None), "value", "open")
                counts[("passive", str(state))] = counts.get(("passive", str(state)), 0) + 1
                _add_timer(seconds, "passive", getattr(job, "timer", None))
            for timer in timers.values():
                _add_timer(seconds, "active", timer)
        for (role, state), n in sorted(counts.items()):
            jobs.add_metric([role, state], n)
        for (role, op), s in sorted(seconds.items()):
            crypto.add_metric([role, op], s)
        for job_id, eps in self._epsilons():
            epsilon.add_metric([job_id], eps)
        return [jobs, crypto, epsilon]

    def _epsilons(self) -> list[tuple[str, float]]:
        jobs_dir = self.node.config.jobs_dir
        try:
            reports = sorted(jobs_dir.glob("*/privacy_report.json"), key=lambda p: p.stat().st_mtime)[-EPSILON_JOBS:]
        except OSError:
            return []
        out = []
        for path in reports:
            try:
                eps = (json.loads(path.read_text()).get("defense") or {}).get("epsilon")
            except (OSError, ValueError):
                continue
            if isinstance(eps, (int, float)):
                out.append((path.parent.name, float(eps)))
        return out


def _add_timer(seconds: dict, role: str, timer) -> None:
    if timer is None:
        return
    for op, s in timer.summary().items():
        if op in ("encrypt", "decrypt", "matrix products"):
            seconds[(role, op)] = seconds.get((role, op), 0.0) + s
