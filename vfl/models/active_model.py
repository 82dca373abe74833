"""The active party's plaintext part of a split-NN: its own bottom model and interactive weight, the bias, the top.

Built by the training runtime from a job spec (`ActiveModel.for_spec`) and by serving from an exported part's
architecture (vfl/models/served.py); both give the same parameter names, so one state dict loads into either.
"""
from __future__ import annotations

import torch

from vfl.models.custom import build_bottom
from vfl.models.mlp import build_mlp, init_module


class _Seeds:
    """Stands in for a party's private randomness when every parameter is loaded afterwards (serving)."""

    def seed(self, purpose: str) -> int:
        return 0

    def seed_torch(self, purpose: str) -> None:
        pass


class ActiveModel(torch.nn.Module):
    """`bottom` and `top` are MLP specs (hidden, out, activation, dropout, module); `private` is the party's private
    randomness (vfl/job/private_random.py), or None when the parameters are loaded afterwards."""

    def __init__(self, bottom, feature_dim: int, interactive_out: int, top, num_outputs: int,
                 activation_bound: float, *, party: str, private=None, init_std: float = 0.0, bottom_factory=None):
        super().__init__()
        private = private if private is not None else _Seeds()
        self.has_bottom = feature_dim > 0
        # every initial weight is this party's secret: drawn from its own node, never from the spec's seed
        private.seed_torch("torch")
        if self.has_bottom:
            self.bottom = build_bottom(bottom, feature_dim, bottom_factory, party, private.seed("bottom"))
            own_weight = torch.randn(bottom.out, interactive_out,
                                     generator=torch.Generator().manual_seed(private.seed("own-weight")))
            self.own_weight = torch.nn.Parameter(own_weight * init_std)
        self.bias = torch.nn.Parameter(torch.zeros(interactive_out))
        self.top = torch.nn.Sequential(torch.nn.ReLU(), build_mlp(interactive_out, tuple(top.hidden), num_outputs,
                                                                  top.activation, top.dropout, False))
        init_module(self.top, private.seed("top"))
        self.bound = activation_bound

    @classmethod
    def for_spec(cls, spec, feature_dim: int, num_outputs: int, private, bottom_factory=None) -> "ActiveModel":
        """The model of a job spec's active party (vfl.job.spec.JobSpec), initialised from its private randomness."""
        return cls(spec.party(spec.active).bottom, feature_dim, spec.interactive_out, spec.top, num_outputs,
                   spec.crypto.activation_bound, party=spec.active, private=private,
                   init_std=spec.interactive_init_std, bottom_factory=bottom_factory)

    def own_z(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.has_bottom:
            return None
        return self.bottom(x).clamp(-self.bound, self.bound) @ self.own_weight

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.top(z + self.bias)

    def optimizers(self, spec) -> list[torch.optim.Optimizer]:
        t = spec.train
        adam = list(self.top.parameters()) + (list(self.bottom.parameters()) if self.has_bottom else [])
        sgd = [self.bias] + ([self.own_weight] if self.has_bottom else [])
        return [torch.optim.Adam(adam, lr=t.lr),
                torch.optim.SGD(sgd, lr=t.interactive_lr, momentum=t.interactive_momentum)]
