"""The active side of one passive link, without a network: state that must not survive a re-setup."""
from __future__ import annotations

import types

import numpy as np

from vfl.job.links import PassiveLink
from vfl.job.timing import Timer
from vfl.protocol.layout import default_layout
from vfl.transport.proto import node_pb2 as pb


def test_setup_after_a_failure_drops_the_prefetched_weight_ciphertexts():
    """A resumed job sets links up with fresh keys; [U] prefetched under the old key must not be sent."""
    link = PassiveLink.__new__(PassiveLink)
    link.spec = types.SimpleNamespace(job_id="j", crypto=types.SimpleNamespace(mode="plaintext"))
    link.paillier = False
    link.peer = "host"
    link._call = lambda name, req, reply_type: pb.SetupReply(bottom_out=4)
    link._next_u = b"ciphertexts under the previous key"
    layout = default_layout(1024, 4, 4, 14, 16, 40, 32.0, 16, seed=0)
    link.setup(layout, None, aligned_rows=10, init_std=0.1, rng=np.random.default_rng(0))
    assert link._next_u is None


def test_round_trip_is_split_only_when_the_peer_reports_its_handler_time():
    link = PassiveLink.__new__(PassiveLink)
    link.timer = Timer()
    link._add_round_trip(2.0, None)             # the default: the peer keeps its handler time
    assert link.timer.summary() == {"peer work + transport": 2.0}
    link.timer = Timer()
    link._add_round_trip(2.0, 1.5)              # report_handler_timing at the peer (benchmarks)
    link._add_round_trip(1.0, 3.0)              # a report longer than the round trip counts as all work
    assert link.timer.summary() == {"waiting on peers' work": 2.5, "transport": 0.5}
