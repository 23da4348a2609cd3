"""Per-task output heads shared by every model: one linear layer per task over a per-frame feature.

``va`` -> (B, L, 2) through tanh (valence, arousal in [-1, 1]); ``expr`` -> (B, L, C) class logits; ``au`` -> (B, L, K)
per-AU logits. The sizes come from :attr:`train.tasks.TaskSpec.n_outputs`, so the ABAW 2020 and ABAW3 codings both work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eval.tasks import TASK_ORDER, TaskSpec


class TaskHeads(nn.Module):
    """``in_dim`` -> {task name: output}. One ``nn.Linear`` per task; tanh on ``va`` only, logits for the others.

    The single fully connected output layer of every seed paper (M3T Sec. II-A, seed 001 Sec. 3.2, seed 002 Sec. I-C,
    ABAW3 Sec. 2, TSAV Sec. III-C) split by task; a task's columns are its own rows of that layer.
    """

    def __init__(self, in_dim: int, tasks: Sequence[TaskSpec]):
        super().__init__()
        if in_dim <= 0:
            raise ValueError(f"TaskHeads: in_dim must be positive, got {in_dim}")
        self.task_names = tuple(task.name for task in tasks)
        self.heads = nn.ModuleDict({task.name: nn.Linear(in_dim, task.n_outputs) for task in tasks})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = {}
        for name in self.task_names:
            out = self.heads[name](features)
            outputs[name] = torch.tanh(out) if name == "va" else out
        return outputs


def check_tasks(tasks: Sequence[TaskSpec]) -> tuple[TaskSpec, ...]:
    """``tasks`` as a tuple after checking it is non-empty, of known names, without repeats."""
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError("a model needs at least one task")
    names = [task.name for task in tasks]
    unknown = [name for name in names if name not in TASK_ORDER]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known tasks: {', '.join(TASK_ORDER)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a task is listed twice: {names}")
    for task in tasks:
        if task.n_outputs <= 0:
            raise ValueError(f"task {task.name!r} has no columns")
    return tasks
