"""A TCP proxy that can cut, stall and delay the link between two nodes, for the fault suite.

`tc netem` is not available here (and would need a network namespace per node), so the active node reaches a passive
node through this proxy instead of directly (Federation's `peer_addresses`). It forwards bytes both ways, one thread
per direction and connection, and on command:

* `cut(seconds)`: resets every open connection (RST, as a pulled cable then a timeout would) and refuses new ones
  for `seconds`;
* `stall(seconds)`: keeps the connections open but forwards nothing for `seconds` (a hung middlebox, a frozen
  network): only keepalive can tell;
* `delay(seconds, for_seconds)`: holds every chunk `seconds` before forwarding it, for `for_seconds`.

It never looks inside the bytes (the nodes speak mutual TLS through it).
"""
from __future__ import annotations

import select
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, target_port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: list[tuple[socket.socket, socket.socket]] = []
        self._refuse_until = 0.0
        self._stall_until = 0.0
        self._delay = 0.0
        self._delay_until = 0.0
        self._closed = False
        self.faults: list[tuple[float, str]] = []  # (monotonic time, what) for the test's record
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ faults
    def cut(self, seconds: float) -> None:
        """Reset every connection now and refuse new ones for `seconds`."""
        self.faults.append((time.monotonic(), f"cut {seconds:g} s"))
        with self._lock:
            self._refuse_until = time.monotonic() + seconds
            connections, self._connections = self._connections, []
        for pair in connections:
            for sock in pair:
                _reset(sock)

    def stall(self, seconds: float) -> None:
        """Forward nothing, either way, for `seconds`; connections stay open."""
        self.faults.append((time.monotonic(), f"stall {seconds:g} s"))
        with self._lock:
            self._stall_until = time.monotonic() + seconds

    def delay(self, seconds: float, for_seconds: float) -> None:
        """Hold every chunk `seconds` before forwarding it, for the next `for_seconds`."""
        self.faults.append((time.monotonic(), f"delay {seconds:g} s for {for_seconds:g} s"))
        with self._lock:
            self._delay, self._delay_until = seconds, time.monotonic() + for_seconds

    def heal(self) -> None:
        with self._lock:
            self._refuse_until = self._stall_until = self._delay_until = 0.0

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut(0)

    # ------------------------------------------------------------------ forwarding
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._refuse_until or self.target_port is None:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _stalled(self) -> bool:
        with self._lock:
            return time.monotonic() < self._stall_until

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Forward `source` to `sink`. During a stall, what arrives is held; if its sender closes meanwhile, the held
        bytes are dropped (a black hole: the sender gave up before the network came back)."""
        held: list[bytes] = []
        try:
            while True:
                readable, _, _ = select.select([source], [], [], 0.05)
                if readable:
                    data = source.recv(65536)
                    if not data:
                        if held and self._stalled():
                            held.clear()
                        break
                    held.append(data)
                if held and not self._stalled():
                    with self._lock:
                        delay = self._delay if time.monotonic() < self._delay_until else 0.0
                    if delay:
                        time.sleep(delay)
                    sink.sendall(b"".join(held))
                    held.clear()
        except (OSError, ValueError):  # ValueError: the socket was closed under us (a cut)
            pass
        finally:
            if held and not self._stalled():
                try:
                    sink.sendall(b"".join(held))
                except OSError:
                    pass
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a connection torn by the network looks to its ends."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
