"""The active side of one passive link, without a network: state that must not survive a re-setup."""
from __future__ import annotations

import types

import numpy as np

from vfl.job.links import PassiveLink
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
