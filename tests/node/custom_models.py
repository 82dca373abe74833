"""Bottom-model factories for the custom-bottom tests; the node processes import them by module path.

Federation puts this module's root directory on the nodes' PYTHONPATH, so `tests.node.custom_models`
imports there as it does here.
"""
from __future__ import annotations

from torch import nn


def layernorm_bottom(in_features: int, out_features: int) -> nn.Module:
    """An architecture the default MLP cannot express: Linear -> LayerNorm -> GELU -> Linear -> Tanh."""
    return nn.Sequential(nn.Linear(in_features, 12), nn.LayerNorm(12), nn.GELU(),
                         nn.Linear(12, out_features), nn.Tanh())


def wrong_width(in_features: int, out_features: int) -> nn.Module:
    """Ignores out_features: its output is one column too wide."""
    return nn.Linear(in_features, out_features + 1)


def not_a_module(in_features: int, out_features: int):
    return [in_features, out_features]


SECRET_PATH = "/srv/bank-b/private/pretrained.pt"


def failing_bottom(in_features: int, out_features: int) -> nn.Module:
    """Fails the way operator code does, with a private file path in its exception text."""
    raise FileNotFoundError(f"no pretrained weights at {SECRET_PATH}")


#: seconds `slow_first_build` sleeps, from the node's environment (the keepalive test sets it)
QUIET_SECONDS_ENV = "VFL_TEST_QUIET_SECONDS"
_built_once = False


def slow_first_build(in_features: int, out_features: int) -> nn.Module:
    """Sleeps on its first call in a process, then builds a small MLP.

    The node calls the factory for its dry forward inside OpenJob, before any event or reply, so a job naming
    it keeps the submitter's event stream (at the active node) or the active node's OpenJob call (at a passive
    node) quiet for that long: the quiet stream of tests/node/test_keepalive.py.
    """
    import os
    import time
    global _built_once
    if not _built_once:
        _built_once = True
        time.sleep(float(os.environ.get(QUIET_SECONDS_ENV, "0")))
    return nn.Sequential(nn.Linear(in_features, 8), nn.ReLU(), nn.Linear(8, out_features))
