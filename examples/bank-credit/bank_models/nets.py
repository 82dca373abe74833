"""Bottom-model factories: `factory(in_features, out_features) -> torch.nn.Module`.

A job spec names one for bank-b by the name bank-b's node config gives it (`models: {tabular:
"bank_models.nets:tabular_bottom"}` and `model.bottom_overrides.bank-b.module: tabular`); the spec never carries
code or an import path, so only what bank-b's operator listed can run on bank-b's node.
"""
from __future__ import annotations

from torch import nn


def tabular_bottom(in_features: int, out_features: int) -> nn.Module:
    """Linear -> LayerNorm -> GELU -> Linear: LayerNorm keeps the per-row scale of bank-b's skewed balances and counts
    steady, which the default MLP (Linear -> ReLU) cannot express."""
    return nn.Sequential(nn.Linear(in_features, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, out_features))
