"""`vfl psi --serve` serves one session: a second active party (or the same one again) gets no second look.

Role: an active party that reaches a standalone `vfl psi --serve` node. Holds: its own IDs and a connection.
Tries: to keep one session open and run a second, complete session on the side, which would answer a second
question about the serving party's IDs (e.g. one-ID cardinality sessions, as in test_psi_per_job.py).
Gets: the second session is refused while the first holds the claim; the serving party keeps serving the first.
Fails at b87a1c7 (the code before the fix): every valid session was served until the first one finished.
"""
from __future__ import annotations

import queue
import time

import grpc

from psi import PsiConfig
from psi.protocol.session import make_hello
from psi.transport import psi_pb2_grpc
from psi.transport.codec import encode
from tests.psi.test_grpc import connect, finish, serve, write_inputs


def test_a_second_session_is_refused_while_the_first_holds_the_claim(tmp_path):
    write_inputs(tmp_path)
    server, port = serve(tmp_path, "--ids", "c.csv", "--column", "id", "--out", "c_out.csv", "--insecure")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    outbox: queue.Queue = queue.Queue()
    hello = make_hello(PsiConfig(), "first", ["server"], 10)
    outbox.put(encode(hello))
    held = psi_pb2_grpc.PsiStub(channel).Session(iter(outbox.get, None))   # claims the session, then idles
    try:
        time.sleep(1.0)
        second = connect(tmp_path, "--connect", f"127.0.0.1:{port}", "--ids", "a.csv", "--column", "customer",
                         "--out", "o.csv", "--insecure")
        assert second.returncode == 1, second.stdout
        assert "serves one session" in second.stderr, second.stderr
        assert server.poll() is None, "the serving party stopped instead of serving its one session"
    finally:
        held.cancel()
        outbox.put(None)
        channel.close()
        server.kill()
        finish(server)
