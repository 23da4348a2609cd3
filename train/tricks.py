"""The tricks that lift ABAW scores today, as options any recipe takes (``config.json``'s ``"tricks"`` section):

- ``smoothing``: per-frame outputs averaged over a centred window before deciding, the window chosen per task on the
  selection videos (validation, else training) from ``smoothing_candidates_frames`` (HSEmotion, ABAW7: up to +7 F1
  on EXPR);
- ``au_thresholds``: each AU's decision threshold chosen on the selection videos from ``threshold_candidates``
  (instead of 0.5), by that AU's own share of the AU score, into which the mean over AUs decomposes exactly;
- ``logit_adjustment_tau``: the EXPR loss sees ``logits + tau log prior`` (Menon et al., ICLR 2021, "Long-tail
  learning via logit adjustment"), the prior being the class frequencies of the fold's training frames; decisions
  use the plain logits, which then favour rare classes as macro-F1 wants (0: off; the paper's tau is 1);
- ``modality_dropout``: while training, each input modality of each window is replaced by zeros (its standardised
  mean, i.e. "no information") with this probability, at least one modality kept, so that the model learns to use
  every modality and keeps working when one is missing (0: off).

What smoothing and thresholds chose is a :class:`~train.post_processing.PostProcessing`; a run records it in
``config.json`` (``"post_processing"``) with the selection scores before and after, and ``predict`` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from eval.metrics import au_score
from eval.tasks import TaskSpec
from train.post_processing import AU_THRESHOLD, PostProcessing
from train.scoring import TASK_SCORE, score

Outputs = Mapping[str, Mapping[str, np.ndarray]]
"""video id -> task -> per-frame outputs, labels or (T,) bool masks."""


@dataclass(frozen=True)
class TricksConfig:
    """Which tricks a run uses (all off by default; see the module docstring)."""

    smoothing: bool = False
    smoothing_candidates_frames: tuple[int, ...] = (1, 3, 5, 9, 15, 25, 45, 75)
    au_thresholds: bool = False
    threshold_candidates: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
    logit_adjustment_tau: float = 0.0
    modality_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout is a probability below 1, got {self.modality_dropout}")
        if any(w < 1 for w in self.smoothing_candidates_frames) or not self.smoothing_candidates_frames:
            raise ValueError("smoothing_candidates_frames must be window lengths of at least 1 frame")
        if not self.threshold_candidates or not all(0.0 < t < 1.0 for t in self.threshold_candidates):
            raise ValueError("threshold_candidates must be probabilities strictly between 0 and 1")

    @property
    def chooses_post_processing(self) -> bool:
        return self.smoothing or self.au_thresholds


def choose_au_thresholds(probabilities: np.ndarray, gold: np.ndarray, task: TaskSpec,
                         candidates: Sequence[float]) -> tuple[float, ...]:
    """Per AU, the candidate threshold with the best score of that AU alone (ties: the one nearest 0.5), from (N, K)
    probabilities and (N, K) 0/1 gold of valid frames."""
    gold = gold.astype(np.int64)
    chosen = []
    for k in range(gold.shape[1]):
        scores = [au_score((probabilities[:, [k]] >= t).astype(np.int64), gold[:, [k]], task.protocol)["score"]
                  for t in candidates]
        best = max(range(len(candidates)), key=lambda i: (round(scores[i], 12), -abs(candidates[i] - AU_THRESHOLD)))
        chosen.append(float(candidates[best]))
    return tuple(chosen)


def choose_post_processing(config: TricksConfig, predictions: Outputs, labels: Outputs, masks: Outputs,
                           tasks: Mapping[str, TaskSpec], video_ids: Sequence[str]) -> PostProcessing:
    """The post-processing ``config`` asks for that scores best on the masked frames of ``video_ids``: each task's
    smoothing window (ties: the shorter), then each AU's threshold on the smoothed probabilities."""
    scored = [name for name in tasks if any(masks[v][name].any() for v in video_ids)]
    windows: dict[str, int] = {}
    for name in scored if config.smoothing else ():
        by_window = {w: score(predictions, labels, masks, {name: tasks[name]}, video_ids,
                              PostProcessing({name: w}))[TASK_SCORE[name]]
                     for w in config.smoothing_candidates_frames}
        windows[name] = max(by_window, key=lambda w: (round(by_window[w], 12), -w))
    post = PostProcessing(windows)
    if not (config.au_thresholds and "au" in scored):
        return post
    pairs = [(post.smooth("au", predictions[v]["au"])[masks[v]["au"]], labels[v]["au"][masks[v]["au"]])
             for v in video_ids if masks[v]["au"].any()]
    probabilities, gold = (np.concatenate(column) for column in zip(*pairs))
    return PostProcessing(windows, choose_au_thresholds(probabilities, gold, tasks["au"], config.threshold_candidates))


def expr_logit_offsets(training_classes: np.ndarray, n_classes: int, tau: float) -> np.ndarray | None:
    """(C,) float32 ``tau log prior`` from the (N,) class indices of the training frames (-1 skipped), each class
    counted at least once so that an absent class gets a finite offset; None when ``tau`` is 0."""
    if tau == 0.0:
        return None
    counts = np.bincount(training_classes[training_classes >= 0], minlength=n_classes)[:n_classes]
    prior = np.maximum(counts, 1) / np.maximum(counts, 1).sum()
    return (tau * np.log(prior)).astype(np.float32)


def drop_modalities(inputs: Mapping[str, torch.Tensor], probability: float,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``inputs`` (modality -> (B, L, ...)) with each modality of each window zeroed with ``probability``, never all
    of a window's modalities (one drawn at random is then kept). One modality alone is never dropped. A trunk input's
    validity (``<name>_valid``) is dropped with it (set False)."""
    names = [name for name in inputs if not name.endswith("_valid")]
    if probability <= 0.0 or len(names) < 2:
        return dict(inputs)
    batch = next(iter(inputs.values())).shape[0]
    keep = torch.rand((batch, len(names)), generator=generator) >= probability
    rescue = torch.randint(len(names), (batch,), generator=generator)
    none_kept = ~keep.any(dim=1)
    keep[none_kept, rescue[none_kept]] = True
    dropped = dict(inputs)
    for i, name in enumerate(names):
        for key in (name, f"{name}_valid"):
            if key in inputs:
                x = inputs[key]
                dropped[key] = x * keep[:, i].to(x.device, x.dtype).reshape(-1, *[1] * (x.dim() - 1))
    return dropped
