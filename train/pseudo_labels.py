"""TSAV's label filtering and valence-arousal <-> expression pseudo-labels (seed 004, Kuhnke et al., Sec. IV).

Aff-Wild2 labels a frame for VA, EXPR or both. TSAV couples the two representations:

- Filtering (Sec. IV-B): a frame labelled for both is dropped from training when its labels contradict each other:
  "happy" with negative valence, "sad" with positive valence, or "neutral" with sqrt(valence^2 + arousal^2) > 0.5
  (:func:`filter_inconsistent`). TSAV removed 6.7 % of its training frames this way (Sec. V-A).
- Histograms (Sec. IV-A, Fig. 2): for each expression, the 2-D histogram of the VA labels of the frames labelled for
  both tasks (:func:`fit_va_histograms`, fitted on the training split only, after filtering).
- VA pseudo-labels (Sec. IV-A): a frame with an expression but no VA label gets a VA label *sampled* from its
  expression's histogram, re-sampled each time the network sees the frame (:func:`pseudo_va`). TSAV's best model uses
  the valence pseudo-label only: arousal pseudo-labels hurt (Sec. V-A, Table II), so ask for ``components=("valence",)``
  to reproduce it.
- EXPR pseudo-labels (Sec. IV-A Eq. 1): soft labels ``p_i(v, a) = n_i(v, a) / sum_j n_j(v, a)`` from the VA bin of a
  frame with VA but no expression (:func:`pseudo_expr_probs`). TSAV found them harmful for rare expressions and did
  not use them in the end; they are here for ablations.

Arrays use the organisers' coding of :mod:`train.tasks`: VA (N, 2) floats in [-1, 1] with -5 invalid, EXPR (N,) ints
with -1 invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eval.tasks import VA_INVALID

NEUTRAL_MAX_NORM = 0.5
"""Largest sqrt(valence^2 + arousal^2) a frame labelled neutral may have (TSAV, Sec. IV-B)."""
VA_COMPONENTS = ("valence", "arousal")


def _va_valid(va: np.ndarray) -> np.ndarray:
    """(N,) bool: both VA values present (not the -5 code); the same rule as ``TaskSpec.valid`` for ``va``."""
    return np.all(va >= -1.0 - 1e-6, axis=-1)


def _check_pair(va: np.ndarray, expr: np.ndarray) -> None:
    if va.ndim != 2 or va.shape[1] != 2 or expr.shape != (va.shape[0],):
        raise ValueError(f"expected va (N, 2) and expr (N,), got {va.shape} and {expr.shape}")


def filter_inconsistent(va: np.ndarray, expr: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """(N,) bool keep-mask: False on frames whose VA (N, 2) and EXPR (N,) labels contradict (TSAV, Sec. IV-B).

    A frame is dropped when both labels are valid and it is labelled ``Happiness`` with valence < 0, ``Sadness`` with
    valence > 0, or ``Neutral`` with sqrt(valence^2 + arousal^2) > 0.5. ``classes`` names the expression indices
    (e.g. :data:`train.tasks.EXPR_CLASSES_ABAW3`) and must contain those three names. Frames missing either label are
    kept: TSAV's further rule "either label not valid" is left to each task's own mask, so that such a frame still
    trains the task it is labelled for.
    """
    va = np.asarray(va, dtype=np.float64)
    expr = np.asarray(expr)
    _check_pair(va, expr)
    missing = {"Happiness", "Sadness", "Neutral"} - set(classes)
    if missing:
        raise ValueError(f"filter_inconsistent: classes lack {sorted(missing)}")
    both = _va_valid(va) & (expr >= 0)
    valence, arousal = va[:, 0], va[:, 1]
    contradiction = (
        ((expr == classes.index("Happiness")) & (valence < 0))
        | ((expr == classes.index("Sadness")) & (valence > 0))
        | ((expr == classes.index("Neutral")) & (np.hypot(valence, arousal) > NEUTRAL_MAX_NORM))
    )
    return ~(both & contradiction)


@dataclass(frozen=True)
class VAHistograms:
    """Per-expression 2-D histograms of VA labels (TSAV, Fig. 2).

    ``counts``: (C, bins, bins) int64, ``counts[c, i, j]`` = frames of expression c with valence in bin i and arousal
    in bin j. ``edges``: (bins + 1,) float64 bin edges over [-1, 1], shared by valence and arousal.
    """

    counts: np.ndarray
    edges: np.ndarray

    @property
    def n_classes(self) -> int:
        return self.counts.shape[0]

    @property
    def bins(self) -> int:
        return self.counts.shape[1]

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """Bin index (same shape, int64, in 0 .. bins - 1) of values in [-1, 1]; 1.0 falls in the last bin."""
        index = np.searchsorted(self.edges, values, side="right") - 1
        return np.clip(index, 0, self.bins - 1)


def fit_va_histograms(
    va: np.ndarray,
    expr: np.ndarray,
    n_classes: int,
    bins: int = 20,
    *,
    keep: np.ndarray | None = None,
) -> VAHistograms:
    """Fit per-expression (C = ``n_classes``) VA histograms on the frames labelled for both tasks (TSAV, Sec. IV-A).

    ``va`` (N, 2) and ``expr`` (N,) are training labels in the organisers' coding; ``keep`` (N,) bool, normally
    :func:`filter_inconsistent`'s result, removes contradictory frames first (TSAV fits after filtering). ``bins``
    equal-width bins per axis over [-1, 1] (the paper does not give its bin count; 20 is 0.1 wide). Values outside
    [-1, 1] fall in the edge bins.
    """
    va = np.asarray(va, dtype=np.float64)
    expr = np.asarray(expr)
    _check_pair(va, expr)
    used = _va_valid(va) & (expr >= 0)
    if keep is not None:
        used &= np.asarray(keep, dtype=bool)
    if np.any(expr[used] >= n_classes):
        raise ValueError(f"fit_va_histograms: expression index >= n_classes={n_classes}")
    histograms = VAHistograms(np.zeros((n_classes, bins, bins), np.int64), np.linspace(-1.0, 1.0, bins + 1))
    np.add.at(
        histograms.counts,
        (expr[used].astype(np.int64), histograms.bin_index(va[used, 0]), histograms.bin_index(va[used, 1])),
        1,
    )
    return histograms


def pseudo_va(
    expr: np.ndarray,
    hist: VAHistograms,
    *,
    va: np.ndarray | None = None,
    components: Sequence[str] = VA_COMPONENTS,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """(N, 2) float32 VA labels with pseudo-labels sampled from each frame's expression histogram (TSAV, Sec. IV-A).

    For every frame with a valid EXPR label (``expr`` (N,), -1 invalid) and no valid VA label in ``va`` (N, 2) (every
    frame when ``va`` is None), a histogram bin is drawn with probability proportional to its count in the frame's
    expression histogram, and valence and arousal are drawn uniformly inside that bin (the paper samples from the
    distribution; drawing within the bin rather than at its centre is this implementation's choice). As in the paper,
    call this anew each time the frames are used (e.g. per epoch) so the sample changes. Only the named
    ``components`` are filled (``("valence",)`` is TSAV's best setting); the others stay -5. Frames with a real VA
    label keep it; frames without an expression label, or whose expression has an empty histogram, stay -5.
    """
    expr = np.asarray(expr)
    if expr.ndim != 1:
        raise ValueError(f"pseudo_va expects expr of shape (N,), got {expr.shape}")
    unknown = set(components) - set(VA_COMPONENTS)
    if unknown:
        raise ValueError(f"pseudo_va: unknown components {sorted(unknown)}; expected a subset of {VA_COMPONENTS}")
    rng = np.random.default_rng() if rng is None else rng
    out = np.full((expr.shape[0], 2), VA_INVALID, np.float32)
    has_va = np.zeros(expr.shape[0], dtype=bool)
    if va is not None:
        va = np.asarray(va, dtype=np.float32)
        _check_pair(va, expr)
        has_va = _va_valid(va)
        out[has_va] = va[has_va]
    totals = hist.counts.reshape(hist.n_classes, -1).sum(axis=1)
    columns = [VA_COMPONENTS.index(name) for name in components]
    width = np.diff(hist.edges)
    for c in np.flatnonzero(totals):
        frames = np.flatnonzero((expr == c) & ~has_va)
        if frames.size == 0:
            continue
        flat = rng.choice(hist.bins * hist.bins, size=frames.size, p=hist.counts[c].ravel() / totals[c])
        bin_v, bin_a = np.unravel_index(flat, (hist.bins, hist.bins))
        valence = hist.edges[bin_v] + rng.random(frames.size) * width[bin_v]
        arousal = hist.edges[bin_a] + rng.random(frames.size) * width[bin_a]
        out[np.ix_(frames, columns)] = np.stack([valence, arousal], axis=1)[:, columns]
    return out


def pseudo_expr_probs(va: np.ndarray, hist: VAHistograms, *, expr: np.ndarray | None = None) -> np.ndarray:
    """(N, C) float32 soft expression labels ``p_i(v, a) = n_i(v, a) / sum_j n_j(v, a)`` (TSAV, Sec. IV-A Eq. 1).

    Filled for frames with a valid VA label in ``va`` (N, 2) and, when ``expr`` (N,) is given, no valid expression
    label; each such row sums to 1 unless its VA bin is empty in every histogram. Every other row is all zeros.
    """
    va = np.asarray(va, dtype=np.float64)
    if va.ndim != 2 or va.shape[1] != 2:
        raise ValueError(f"pseudo_expr_probs expects va of shape (N, 2), got {va.shape}")
    wanted = _va_valid(va)
    if expr is not None:
        expr = np.asarray(expr)
        _check_pair(va, expr)
        wanted &= expr < 0
    counts = hist.counts[:, hist.bin_index(va[wanted, 0]), hist.bin_index(va[wanted, 1])].T.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    out = np.zeros((va.shape[0], hist.n_classes), np.float32)
    out[wanted] = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return out


class EpochPseudoLabels:
    """TSAV's VA pseudo-labels of the training frames labelled with an expression but no VA, drawn anew at every epoch
    ("each time the network sees the frame", Sec. IV-A) from ``histograms`` (fitted on training frames labelled for
    both tasks). Only ``components`` are filled: valence alone by default, as TSAV's best model (arousal
    pseudo-labels lowered its arousal CCC from 0.613 to 0.543, Table II); the others stay -5, masked by the loss.

    ``labels`` (video id -> task -> array) are rewritten in place: pass copies the caller owns. ``frames`` gives each
    video's (T,) bool mask of the frames to pseudo-label (training role, expression, no VA).
    """

    def __init__(self, labels: dict, frames: dict[str, np.ndarray], histograms: VAHistograms,
                 components: Sequence[str] = ("valence",), seed: int = 0):
        self.labels, self.frames, self.histograms = labels, frames, histograms
        self.components, self.seed = tuple(components), seed
        self.draw(0)

    def draw(self, epoch: int) -> None:
        """This epoch's pseudo-labels (reproducible from the seed and the epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        for video, frames in self.frames.items():
            va = self.labels[video]["va"]
            va[frames] = pseudo_va(self.labels[video]["expr"][frames], self.histograms, components=self.components,
                                   rng=rng)
