"""Torch models: bottom MLPs per party, the top model at the active party, task losses and metrics."""
from vfl.models.mlp import build_mlp
from vfl.models.tasks import Task, make_task

__all__ = ["build_mlp", "Task", "make_task"]
