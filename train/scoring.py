"""Scores of per-frame predictions with the official ABAW metrics (eval.metrics), in the trainer's metric names.

Frames are scored the organisers' way: the masked (valid) frames of all videos concatenated, then one score. Keys:
``valence``, ``arousal``, ``va_mean``, ``expr_f1``, ``expr_accuracy``, ``expr_score``, ``au_f1``, ``au_accuracy``,
``au_score``, for the tasks present; ``objective`` is their ABAW multi-task sum (``va_mean + expr_score + au_score``),
the number model selection maximises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from eval import metrics
from train.predict import decide
from train.tasks import TaskSpec


def score(predictions: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, Mapping[str, np.ndarray]],
          masks: Mapping[str, Mapping[str, np.ndarray]], tasks: Mapping[str, TaskSpec],
          video_ids: Sequence[str]) -> dict[str, float]:
    """Metrics over the frames where ``masks[video][task]`` is True, all ``video_ids`` concatenated."""
    result: dict[str, float] = {}
    objective = 0.0
    for name, task in tasks.items():
        frames = [(predictions[v][name][masks[v][name]], labels[v][name][masks[v][name]]) for v in video_ids
                  if v in predictions and masks[v][name].any()]
        if not frames:
            continue
        pred = decide(name, np.concatenate([p for p, _ in frames]))
        gold = np.concatenate([g for _, g in frames])
        if name == "va":
            va = metrics.va_score(pred, gold)
            result |= {"valence": va["valence"], "arousal": va["arousal"], "va_mean": va["mean"]}
            objective += va["mean"]
        elif name == "expr":
            expr = metrics.expr_score(pred, gold, task.protocol, n_classes=task.n_outputs)
            result |= {"expr_f1": expr["f1"], "expr_accuracy": expr["accuracy"], "expr_score": expr["score"]}
            objective += expr["score"]
        else:
            au = metrics.au_score(pred, gold.astype(np.int64), task.protocol)
            result |= {"au_f1": au["f1"], "au_accuracy": au["accuracy"], "au_score": au["score"]}
            objective += au["score"]
    if result:
        result["objective"] = objective
    return {key: float(value) for key, value in result.items()}
