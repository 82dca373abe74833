"""Default MLPs built from the job spec."""
from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
                "leaky_relu": nn.LeakyReLU}


def build_mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str = "relu",
              dropout: float = 0.0, final_activation: bool = True) -> nn.Sequential:
    """in_dim -> hidden... -> out_dim; the activation follows every layer, the last one too if asked.

    Bottom models end with an activation (their output feeds the interactive layer); the top model ends
    with raw logits or a regression output.
    """
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden, out_dim]
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        last = i == len(dims) - 2
        if not last or final_activation:
            layers.append(_ACTIVATIONS[activation]())
            if dropout and not last:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def init_module(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if p.dim() >= 2:
            bound = (6.0 / (p.shape[0] + p.shape[1])) ** 0.5
            with torch.no_grad():
                p.uniform_(-bound, bound, generator=gen)
        else:
            with torch.no_grad():
                p.zero_()
