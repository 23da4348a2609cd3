"""Scores of a model's per-frame outputs with the official ABAW metrics, in the trainer's metric names.

Outputs are turned into decisions (:meth:`train.post_processing.PostProcessing.decide`: smoothed and thresholded
as the run chose, or as they are) and scored by :func:`eval.metrics.task_scores`
the organisers' way: the masked (valid) frames of all videos concatenated, then one score. Keys: ``valence``,
``arousal``, ``va_mean``, ``expr_f1``, ``expr_accuracy``, ``expr_score``, ``au_f1``, ``au_accuracy``, ``au_score``,
for the tasks present; ``objective`` is their ABAW multi-task sum (``va_mean + expr_score + au_score``), the number
model selection maximises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from eval.metrics import task_scores
from eval.tasks import TaskSpec
from train.post_processing import PostProcessing

TASK_SCORE = {"va": "va_mean", "expr": "expr_score", "au": "au_score"}
"""Each task's ABAW score among the keys :func:`score` returns."""
OBJECTIVE_TERMS = tuple(TASK_SCORE.values())


def score(predictions: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, Mapping[str, np.ndarray]],
          masks: Mapping[str, Mapping[str, np.ndarray]], tasks: Mapping[str, TaskSpec],
          video_ids: Sequence[str], post: PostProcessing = PostProcessing()) -> dict[str, float]:
    """Metrics over the frames where ``masks[video][task]`` is True, all ``video_ids`` concatenated, of the decisions
    ``post`` makes (default: none smoothed, AUs at 0.5)."""
    decisions = {v: {t: post.decide(t, out) for t, out in predictions[v].items() if t in tasks}
                 for v in video_ids if v in predictions}
    result = task_scores(decisions, labels, masks, tasks, video_ids)
    result.pop("au_f1_per_au", None)
    if result:
        result["objective"] = float(sum(result[k] for k in OBJECTIVE_TERMS if k in result))
    return result
