"""gRPC keepalive for every channel and server of the project, in one place, so both ends of a channel agree.

Both ends of a gRPC connection have keepalive settings, and they must fit together: a client that pings more
often than its server permits gets ``GOAWAY too_many_pings`` after three pings on a quiet stream, and every call
on that connection dies (``UNAVAILABLE: Too many pings``). gRPC servers permit one ping per five minutes by
default, so a 30 s client ping killed any stream that stayed quiet for about two minutes.

Here, every client pings every ``time_ms`` and gives up on a connection whose peer does not acknowledge a ping
within ``timeout_ms`` (a stopped process, a dead host, a cut link that TCP does not notice): its calls then fail
with UNAVAILABLE instead of waiting for their deadline. Every server pings its clients the same way, and permits
pings down to :data:`PERMIT_PING_INTERVAL_MS`, half the shortest interval a gRPC client sends them at, whatever
keepalive time either party set. ``psi`` builds no channels or servers itself; whoever does (the ``vfl`` node,
``vfl psi``, the Python API) takes its options from here.

The intervals come from the environment, read only by :func:`from_env`: ``VFL_KEEPALIVE_TIME_MS`` and
``VFL_KEEPALIVE_TIMEOUT_MS``. Tests shorten them; an operator rarely needs to.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from psi.errors import PsiConfigError

TIME_ENV = "VFL_KEEPALIVE_TIME_MS"
TIMEOUT_ENV = "VFL_KEEPALIVE_TIMEOUT_MS"
#: a ping every 20 s, and 10 s for its answer: a peer that stops answering is noticed within 30 s
DEFAULT_TIME_MS = 20_000
DEFAULT_TIMEOUT_MS = 10_000
#: grpcio (1.85) sends keepalive pings at most once a second however short keepalive_time_ms is
MIN_TIME_MS = 1_000
#: servers permit pings this often: half the shortest client interval, so that a ping delayed on the way and the
#: next one on time are not counted as abuse
PERMIT_PING_INTERVAL_MS = MIN_TIME_MS // 2
MAX_MS = 24 * 3600 * 1000

Options = list[tuple[str, int]]


@dataclass(frozen=True)
class Keepalive:
    time_ms: int = DEFAULT_TIME_MS
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    def __post_init__(self) -> None:
        if not MIN_TIME_MS <= self.time_ms <= MAX_MS:
            raise PsiConfigError(f"keepalive time must be {MIN_TIME_MS}..{MAX_MS} ms, got {self.time_ms}")
        if not 1 <= self.timeout_ms <= MAX_MS:
            raise PsiConfigError(f"keepalive timeout must be 1..{MAX_MS} ms, got {self.timeout_ms}")

    @property
    def detection_seconds(self) -> float:
        """The longest a connection to a peer that stopped answering stays up: one interval, then the timeout."""
        return (self.time_ms + self.timeout_ms) / 1000

    def _ping_options(self) -> Options:
        return [
            ("grpc.keepalive_time_ms", self.time_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            # grpcio 1.85 waits for a ping's answer for this long, whatever keepalive_timeout_ms says (its
            # default is a minute); without it a stopped peer held a call for its whole deadline
            ("grpc.http2.ping_timeout_ms", self.timeout_ms),
        ]

    def client_options(self) -> Options:
        return self._ping_options() + [
            # ping between calls too: an idle channel to a dead peer is noticed before the next call needs it
            ("grpc.keepalive_permit_without_calls", 1),
            # keep pinging however long a stream stays quiet (gRPC stops after two pings without data by default)
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def server_options(self) -> Options:
        # the server watches its clients the same way: a stopped client's streams end
        return self._ping_options() + [
            ("grpc.http2.max_pings_without_data", 0),
            # what clients may do: ping without calls, and as often as any gRPC client pings (the option is
            # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS; gRPC's default is five minutes)
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", PERMIT_PING_INTERVAL_MS),
        ]


def _ms(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise PsiConfigError(f"{name}: must be a whole number of milliseconds, got {text[:40]!r}") from None


def from_env(environ: Mapping[str, str] | None = None) -> Keepalive:
    """The keepalive settings of this process: the defaults, or VFL_KEEPALIVE_TIME_MS / VFL_KEEPALIVE_TIMEOUT_MS."""
    environ = os.environ if environ is None else environ
    return Keepalive(_ms(environ, TIME_ENV, DEFAULT_TIME_MS), _ms(environ, TIMEOUT_ENV, DEFAULT_TIMEOUT_MS))


def client_options() -> Options:
    return from_env().client_options()


def server_options() -> Options:
    return from_env().server_options()
