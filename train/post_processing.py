"""From a model's per-frame outputs to decisions, and the post-processing chosen on validation videos.

Outputs (as :func:`train.predict.predict_frames` averages them over windows): ``va`` (T, 2) values, ``expr`` (T, C)
class probabilities, ``au`` (T, K) probabilities. :class:`PostProcessing` turns them into decisions:

- ``smoothing_frames``: per task, a centred moving average of the outputs over that many frames
  (:func:`eval.fusion.box_smooth`; 1 = none) before deciding (HSEmotion, ABAW7: up to +7 F1 on EXPR);
- ``au_thresholds``: per AU, the probability from which it is predicted present (0.5 each without).

:func:`train.tricks.choose_post_processing` picks both on the videos model selection used; a run records what it
chose in ``config.json`` (``"post_processing"``) and ``predict`` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.fusion import box_smooth

AU_THRESHOLD = 0.5
"""The AU decision threshold (a probability) without chosen per-AU thresholds."""

def decide(task: str, outputs: np.ndarray, au_thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Per-frame decisions from outputs: VA values, the EXPR class index, AU 0/1 (present from ``au_thresholds``,
    one probability per AU, else 0.5)."""
    if task == "expr":
        return outputs.argmax(axis=-1)
    if task == "au":
        thresholds = AU_THRESHOLD if au_thresholds is None else np.asarray(au_thresholds, np.float32)
        return (outputs >= thresholds).astype(np.int64)
    return outputs


@dataclass(frozen=True)
class PostProcessing:
    """Smoothing windows (frames, per task; absent or 1 = none) and per-AU thresholds (probabilities; None = 0.5)."""

    smoothing_frames: Mapping[str, int] = field(default_factory=dict)
    au_thresholds: tuple[float, ...] | None = None

    def smooth(self, task: str, outputs: np.ndarray) -> np.ndarray:
        """One video's (T, ...) outputs of ``task`` averaged over its window (unchanged without one)."""
        window = self.smoothing_frames.get(task, 1)
        return outputs if window <= 1 else box_smooth(outputs, window).astype(outputs.dtype)

    def decide(self, task: str, outputs: np.ndarray) -> np.ndarray:
        """One video's decisions for ``task``: smoothed, then :func:`decide` with the chosen AU thresholds."""
        return decide(task, self.smooth(task, outputs), self.au_thresholds)

    def to_json(self) -> dict[str, Any]:
        return {"smoothing_frames": dict(self.smoothing_frames),
                "au_thresholds": None if self.au_thresholds is None else list(self.au_thresholds)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PostProcessing:
        """The inverse of :meth:`to_json`; runs made before post-processing existed have none (``None``)."""
        if not data:
            return cls()
        thresholds = data.get("au_thresholds")
        return cls(dict(data.get("smoothing_frames") or {}), None if thresholds is None else tuple(thresholds))
