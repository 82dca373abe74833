"""The active side of one passive link: timing of its calls, and state that must not survive a re-setup."""
from __future__ import annotations

import numpy as np

from tests.job.conftest import job_spec
from vfl.job.ledger import WireLedger
from vfl.job.peer import ActivePeer
from vfl.job.timing import Timer
from vfl.protocol.layout import default_layout
from vfl.protocol.link import InProcessLink
from vfl.protocol.messages import SetupReply
from vfl.protocol.schemes import paillier
from vfl.compute import LocalCompute


def _peer(handler) -> ActivePeer:
    spec = job_spec("j")
    return ActivePeer("host", InProcessLink("host", handler), spec, WireLedger(), Timer(), LocalCompute(1))


def test_every_setup_gets_a_fresh_half_so_nothing_prefetched_under_an_old_key_is_sent():
    """A resumed job sets links up with fresh keys; [U] prefetched under the old key must not be sent."""
    layout = default_layout(1024, 4, 4, 14, 16, 40, 32.0, 16, seed=0)
    host_key = paillier.new_key(1024, LocalCompute(1))
    masked = np.zeros((4, 4), dtype=object)
    from vfl.protocol.messages import encode_int_matrix
    reply = SetupReply(bottom_out=4, passive_public_key=paillier.public_key_bytes(host_key),
                       passive_djn_base=paillier.djn_base_bytes(host_key), init_masked=encode_int_matrix(masked))
    peer = _peer(lambda request: reply)
    old_key, new_key = paillier.new_key(1024, LocalCompute(1)), paillier.new_key(1024, LocalCompute(1))
    peer.setup(layout, old_key, 10, 0.1, np.random.default_rng(0))
    first = peer.half
    first._prepare_weight_bases()
    assert first._next_u is not None
    peer.setup(layout, new_key, 10, 0.1, np.random.default_rng(0))
    assert peer.half is not first and peer.half._next_u is None
    u = peer.half.forward_fields()["u_ciphertexts"]  # encrypted now, under the new key
    assert paillier.receive(u, new_key, len(u) // 256, "u").n == new_key.n


def test_round_trip_is_split_only_when_the_peer_reports_its_handler_time():
    peer = _peer(lambda request: None)
    peer._add_round_trip(2.0, None)             # the default: the peer keeps its handler time
    assert peer.timer.summary() == {"peer work + transport": 2.0}
    peer.timer = Timer()
    peer._add_round_trip(2.0, 1.5)              # report_handler_timing at the peer (benchmarks)
    peer._add_round_trip(1.0, 3.0)              # a report longer than the round trip counts as all work
    assert peer.timer.summary() == {"waiting on peers' work": 2.5, "transport": 0.5}
