"""Fusion of the predictions of several folds (ABAW3, seed 003 sec. 3.3: CCC-centering, then clipping).

:func:`ccc_centering` is a port of AVEC 2016's ``run_gold_standard`` as sucv/ABAW3 uses it on one video's continuous
predictions from M folds: every fold is re-centred on a common level, weighted by how well it agrees with the others,
and the folds are averaged. Class decisions (EXPR, AU) are fused by majority vote (:func:`majority_vote`).
"""

from __future__ import annotations

import numpy as np
import scipy.signal

SAVGOL_WINDOW_FRAMES = 5
SAVGOL_ORDER = 3
BOX_WINDOW_FRAMES = 15


def _pairwise_agreement(x_i: np.ndarray, x_j: np.ndarray) -> float:
    """AVEC 2016's CCC between two folds: covariance over N, variances over N - 1 (kept as the reference does)."""
    covariance = np.mean((x_i - x_i.mean()) * (x_j - x_j.mean()))
    denominator = x_i.var(ddof=1) + x_j.var(ddof=1) + (x_i.mean() - x_j.mean()) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else 0.0


def box_smooth(x: np.ndarray, window_frames: int = BOX_WINDOW_FRAMES) -> np.ndarray:
    """Centred moving average over ``window_frames`` frames along the first axis of a (T,) or (T, ...) array, same
    shape as ``x``; the ends average over the frames that exist."""
    x = np.asarray(x, dtype=np.float64)
    after = (window_frames - 1) // 2  # frames after the centre; an even window reaches one further back
    before = window_frames - 1 - after
    sums = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)])
    frame = np.arange(len(x))
    start, stop = np.maximum(frame - before, 0), np.minimum(frame + after + 1, len(x))
    counts = (stop - start).reshape(-1, *([1] * (x.ndim - 1)))
    return (sums[stop] - sums[start]) / counts


def ccc_centering(predictions: np.ndarray, pre_smooth: bool = False, post_smooth: bool = False) -> np.ndarray:
    """Fuse one video's predictions of M folds, (M, T), into (T,) in [-1, 1].

    c_ij = CCC(x_i, x_j) for i < j; a_m = mean of the c over the pairs containing m; mu_m = time-mean of fold m;
    w = sum(a_m mu_m) / sum(a_m); fused(t) = mean over m of (x_m(t) - mu_m + w), clipped to [-1, 1].
    ``pre_smooth``: Savitzky-Golay (5 frames, order 3) on each fold first; ``post_smooth``: a 15-frame box average of
    the fused series. With one fold, that fold is returned (clipped).
    """
    x = np.asarray(predictions, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"ccc_centering expects (folds, frames), got shape {x.shape}")
    n_folds, n_frames = x.shape
    if pre_smooth and n_frames >= SAVGOL_WINDOW_FRAMES:
        x = scipy.signal.savgol_filter(x, SAVGOL_WINDOW_FRAMES, SAVGOL_ORDER, axis=1)
    if n_folds == 1 or n_frames < 2:
        fused = x.mean(axis=0)
    else:
        agreement = np.zeros((n_folds, n_folds))
        for i in range(n_folds):
            for j in range(i + 1, n_folds):
                agreement[i, j] = agreement[j, i] = _pairwise_agreement(x[i], x[j])
        weights = agreement.sum(axis=1) / (n_folds - 1)
        means = x.mean(axis=1)
        level = (weights @ means) / weights.sum() if abs(weights.sum()) > 1e-12 else means.mean()
        fused = (x - means[:, None] + level).mean(axis=0)
    if post_smooth:
        fused = box_smooth(fused)
    return np.clip(fused, -1.0, 1.0)


def majority_vote(decisions: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Fuse M folds' per-frame decisions by majority: class indices (M, T) -> (T,) (ties: the lowest class), or
    0/1 AU matrices (M, T, K) -> (T, K) (ties: 1 only with a strict majority)."""
    decisions = np.asarray(decisions)
    if decisions.ndim == 3:
        return (2 * decisions.sum(axis=0) > decisions.shape[0]).astype(np.int64)
    n_classes = int(decisions.max()) + 1 if n_classes is None else n_classes
    counts = np.stack([(decisions == c).sum(axis=0) for c in range(n_classes)])
    return counts.argmax(axis=0)
