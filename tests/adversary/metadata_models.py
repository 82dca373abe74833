"""A passive party's own bottom model that fails inside training with private text in its exception.

Federation puts this module's root directory on the nodes' PYTHONPATH, so the passive node imports it as
`tests.adversary.metadata_models`.
"""
from __future__ import annotations

import torch
from torch import nn

# What the passive party's operator would not want a peer to read: a private path in an exception message.
SECRET_MARKER = "SECRET-MARKER /data/patients.csv"


class FailsOnRealBatches(nn.Module):
    """A linear bottom that raises on any batch of more than two rows.

    The dry forward at OpenJob uses two zero rows, so the job opens and PSI and Setup succeed; the first
    training Forward then hits an internal error (a RuntimeError, not one of vfl's peer-caused errors).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 2:
            raise RuntimeError(SECRET_MARKER)
        return self.linear(x)


def fails_on_real_batches(in_features: int, out_features: int) -> nn.Module:
    return FailsOnRealBatches(in_features, out_features)
