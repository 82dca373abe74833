"""The fault suite's TCP proxy does what its faults say (so a passing fault case means the nodes coped, not that the
proxy did nothing)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.faults.proxy import FaultProxy


@pytest.fixture
def echo():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _echo(conn):
    try:
        while data := conn.recv(4096):
            conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def roundtrip(sock, data=b"ping", timeout=2.0):
    sock.settimeout(timeout)
    sock.sendall(data)
    return sock.recv(4096)


def test_it_forwards_cuts_stalls_and_delays(echo):
    proxy = FaultProxy(echo)
    try:
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        assert roundtrip(sock) == b"ping"
        proxy.cut(1.0)  # the open connection is reset, and new ones are refused for a second
        with pytest.raises(OSError):
            roundtrip(sock)
            roundtrip(sock)
        refused = socket.create_connection(("127.0.0.1", proxy.port))
        with pytest.raises(OSError):
            roundtrip(refused)
            roundtrip(refused)
        time.sleep(1.1)
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        assert roundtrip(sock) == b"ping"
        proxy.stall(1.0)  # nothing passes while stalled, everything after
        with pytest.raises(socket.timeout):
            roundtrip(sock, b"held", timeout=0.5)
        sock.settimeout(2.0)
        assert sock.recv(4096) == b"held"
        proxy.delay(0.3, 5.0)
        t0 = time.monotonic()
        assert roundtrip(sock) == b"ping"
        assert time.monotonic() - t0 >= 0.55  # held each way
    finally:
        proxy.close()
