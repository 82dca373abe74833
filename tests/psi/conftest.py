"""Shared helpers for the PSI tests: random ID sets, an in-test gRPC server, protobuf blobs to audit."""
from __future__ import annotations

import random
from concurrent import futures

import grpc
import pytest

from psi.core.engine import Engine


def random_ids(n: int, seed: int, prefix: str = "customer-") -> list[str]:
    """n distinct IDs of at least 16 characters (the leakage audit looks for 16-byte windows)."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(f"{prefix}{rng.getrandbits(56):014x}")
    ids = sorted(out)
    rng.shuffle(ids)
    return ids


def split_sets(universe: list[str], sizes_and_offsets: list[tuple[int, int]]) -> list[list[str]]:
    return [universe[o:o + n] for n, o in sizes_and_offsets]


@pytest.fixture(scope="session")
def engine():
    """One in-thread compute engine for the fast tests (workers=0: no process start-up)."""
    eng = Engine(0)
    yield eng
    eng.close()


class PsiServer:
    """A gRPC server in this process serving PSI with the given IDs (per recipient name)."""

    def __init__(self, ids_by_name: dict, engine, interceptors=(), **kwargs):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=list(interceptors))
        from psi.transport import add_psi_service
        self.ids_by_name = ids_by_name
        self.servicer = add_psi_service(self.server, self._provide, engine=engine, **kwargs)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.address = f"127.0.0.1:{self.port}"

    def _provide(self, hello, peer):
        return self.ids_by_name[hello.recipient]

    def channel(self, interceptor=None):
        ch = grpc.insecure_channel(self.address)
        return grpc.intercept_channel(ch, interceptor) if interceptor else ch

    def stop(self):
        self.server.stop(0)


@pytest.fixture
def psi_server(engine):
    servers = []

    def make(ids_by_name, **kwargs):
        s = PsiServer(ids_by_name, engine, **kwargs)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()
