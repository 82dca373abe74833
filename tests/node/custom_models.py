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
