"""The ABAW challenge metrics, computed the organisers' way, with per-video views as well.

The organisers score a task by concatenating the valid frames of all test videos into one long sequence and computing
each metric once over it (:func:`concatenate_valid` then a score function). :func:`per_video` scores every video on its
own and :func:`mean_over_videos` averages those; the two views differ (CCC in particular is not additive), and only the
concatenated one is the challenge number.

Metrics (all inputs are numpy-compatible arrays of valid frames only; N = number of frames, K = number of AUs):

- VA, all protocols: concordance correlation coefficient per dimension and their mean (seed 000, Sec. III-A Eq. 7;
  seed 003, Sec. 4).
- EXPR, protocols ``abaw2020`` and ``abaw2021``: 0.67 macro-F1 + 0.33 total accuracy (seed 001, Sec. 4.3 Eq. 4;
  seed 004, Sec. V-B), the macro-F1 taken over the classes present in gold or prediction, which is what the
  organisers' ``sklearn.metrics.f1_score(average="macro")`` without ``labels`` does.
- EXPR, protocol ``abaw2022`` (ABAW3 onward): macro-F1 over all ``n_classes`` (8) classes; a class absent from both
  gold and prediction scores 0.
- AU, protocols ``abaw2020`` (8 AUs) and ``abaw2021`` (12 AUs): 0.5 mean per-AU F1 + 0.5 total accuracy over the
  flattened N x K matrix (seed 001, Sec. 4.3 Eq. 3); ``abaw2022``: mean per-AU F1.

Every F1 is ``2 TP / (2 TP + FP + FN)`` and 0 when that denominator is 0 (sklearn's ``zero_division=0``); this is
computed with numpy here and gives exactly sklearn's numbers. Scores are plain Python floats so they serialise to JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from eval.tasks import PROTOCOLS, Protocol, TaskSpec

EXPR_WEIGHTS_ABAW2020 = (0.67, 0.33)
"""(F1 weight, accuracy weight) of the ABAW 2020/2021 expression criterion."""
AU_WEIGHTS_ABAW2020 = (0.5, 0.5)
"""(F1 weight, accuracy weight) of the ABAW 2020/2021 action unit criterion."""


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def _same_length(pred: np.ndarray, gold: np.ndarray, what: str) -> None:
    if pred.shape != gold.shape:
        raise ValueError(f"{what}: prediction shape {pred.shape} differs from gold shape {gold.shape}")
    if pred.shape[0] == 0:
        raise ValueError(f"{what}: no frames to score")


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Element-wise F1 = 2 TP / (2 TP + FP + FN) from integer counts, 0 where the denominator is 0."""
    denominator = 2 * tp + fp + fn
    return np.divide(2.0 * tp, denominator, out=np.zeros(np.shape(tp), np.float64), where=denominator > 0)


def _criterion(protocol: str, abaw2020_weights: tuple[float, float], f1: float, accuracy: float) -> float:
    """The challenge criterion: weighted F1 and accuracy under ``abaw2020``/``abaw2021``, the F1 alone from ABAW3 on."""
    if protocol in ("abaw2020", "abaw2021"):
        f1_weight, accuracy_weight = abaw2020_weights
        return float(f1_weight * f1 + accuracy_weight * accuracy)
    return float(f1)


def ccc(pred: Any, gold: Any) -> float:
    """Concordance correlation coefficient of two (N,) series of the same unit (e.g. valence in [-1, 1]).

    ``2 cov / (var_p + var_g + (mean_p - mean_g)^2)`` with population (1/N) moments, in float64 (seed 000, Eq. 7).
    Returns 0.0, not NaN, when either input is constant (its covariance with anything is 0). Range [-1, 1].
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    g = np.asarray(gold, dtype=np.float64).reshape(-1)
    _same_length(p, g, "ccc")
    if np.ptp(p) == 0.0 or np.ptp(g) == 0.0:
        return 0.0
    p_centred = p - p.mean()
    g_centred = g - g.mean()
    covariance = np.mean(p_centred * g_centred)
    denominator = np.mean(p_centred**2) + np.mean(g_centred**2) + (p.mean() - g.mean()) ** 2
    return float(2.0 * covariance / denominator)


def va_score(pred: Any, gold: Any) -> dict[str, float]:
    """VA criterion of (N, 2) valence/arousal predictions against (N, 2) gold, both in [-1, 1].

    Returns ``{"valence": CCC_V, "arousal": CCC_A, "mean": (CCC_V + CCC_A) / 2}``.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gold, dtype=np.float64)
    _same_length(p, g, "va_score")
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"va_score expects (N, 2) arrays, got {p.shape}")
    valence, arousal = ccc(p[:, 0], g[:, 0]), ccc(p[:, 1], g[:, 1])
    return {"valence": valence, "arousal": arousal, "mean": (valence + arousal) / 2.0}


def expr_score(pred: Any, gold: Any, protocol: Protocol, *, n_classes: int = 8) -> dict[str, float]:
    """Expression criterion of (N,) predicted class indices against (N,) gold class indices (both ints >= 0).

    ``f1`` is the unweighted (macro) mean of per-class F1: for ``abaw2020``/``abaw2021`` over the classes that occur
    in gold or prediction, for ``abaw2022`` over classes ``0 .. n_classes - 1`` with an absent class scoring 0.
    ``accuracy`` is the fraction of frames predicted right. ``score`` is ``0.67 f1 + 0.33 accuracy`` for
    ``abaw2020``/``abaw2021`` and ``f1`` for ``abaw2022``. ``n_classes`` is used by ``abaw2022`` only (8 in ABAW3
    onward).
    """
    _check_protocol(protocol)
    p = np.asarray(pred).reshape(-1)
    g = np.asarray(gold).reshape(-1)
    _same_length(p, g, "expr_score")
    if not (np.issubdtype(p.dtype, np.integer) and np.issubdtype(g.dtype, np.integer)):
        if not (np.array_equal(p, np.round(p)) and np.array_equal(g, np.round(g))):
            raise ValueError("expr_score expects class indices, not scores or probabilities")
        p, g = p.astype(np.int64), g.astype(np.int64)
    if p.min() < 0 or g.min() < 0:
        raise ValueError("expr_score got a negative class index: drop invalid (-1) frames first")
    if protocol == "abaw2022":
        if max(p.max(), g.max()) >= n_classes:
            raise ValueError(f"expr_score: class index >= n_classes={n_classes}")
        classes = np.arange(n_classes)
    else:
        classes = np.union1d(p, g)
    tp = np.array([np.sum((p == c) & (g == c)) for c in classes])
    fp = np.array([np.sum((p == c) & (g != c)) for c in classes])
    fn = np.array([np.sum((p != c) & (g == c)) for c in classes])
    f1 = float(np.mean(_f1(tp, fp, fn)))
    accuracy = float(np.mean(p == g))
    return {"f1": f1, "accuracy": accuracy, "score": _criterion(protocol, EXPR_WEIGHTS_ABAW2020, f1, accuracy)}


def au_score(pred: Any, gold: Any, protocol: Protocol) -> dict[str, Any]:
    """Action unit criterion of (N, K) binary (0/1) predictions against (N, K) binary gold.

    ``f1_per_au`` is the list of K per-AU F1 scores (an AU absent from both gold and prediction scores 0), ``f1`` their
    mean, ``accuracy`` the fraction of the N x K entries predicted right. ``score`` is ``0.5 f1 + 0.5 accuracy`` for
    ``abaw2020``/``abaw2021`` and ``f1`` for ``abaw2022``. Threshold logits/probabilities before calling.
    """
    _check_protocol(protocol)
    p = np.asarray(pred)
    g = np.asarray(gold)
    _same_length(p, g, "au_score")
    if p.ndim != 2:
        raise ValueError(f"au_score expects (N, K) arrays, got {p.shape}")
    if not (np.isin(p, (0, 1)).all() and np.isin(g, (0, 1)).all()):
        raise ValueError("au_score expects 0/1 entries: threshold predictions and drop invalid (-1) rows first")
    p, g = p.astype(bool), g.astype(bool)
    tp = np.sum(p & g, axis=0)
    fp = np.sum(p & ~g, axis=0)
    fn = np.sum(~p & g, axis=0)
    f1_per_au = _f1(tp, fp, fn)
    f1 = float(np.mean(f1_per_au))
    accuracy = float(np.mean(p == g))
    return {"f1_per_au": [float(x) for x in f1_per_au], "f1": f1, "accuracy": accuracy,
            "score": _criterion(protocol, AU_WEIGHTS_ABAW2020, f1, accuracy)}


def _valid_rows(video: str, gold: np.ndarray, valid: Mapping[str, Any] | None, task: TaskSpec | None) -> np.ndarray:
    """(T,) bool mask of one video's scorable frames: ``valid[video]``, else ``task.valid(gold)``, else all frames."""
    if valid is not None:
        mask = np.asarray(valid[video], dtype=bool).reshape(-1)
    elif task is not None:
        mask = np.asarray(task.valid(gold), dtype=bool)
    else:
        mask = np.ones(gold.shape[0], dtype=bool)
    if mask.shape[0] != gold.shape[0]:
        raise ValueError(f"video {video!r}: validity has {mask.shape[0]} frames, gold has {gold.shape[0]}")
    return mask


def _video_frames(
    video: str,
    preds: Mapping[str, Any],
    golds: Mapping[str, Any],
    valid: Mapping[str, Any] | None,
    task: TaskSpec | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One video's (prediction, gold) restricted to its valid frames; shapes (n_valid, ...)."""
    if video not in preds:
        raise ValueError(f"no prediction for video {video!r}")
    pred = np.asarray(preds[video])
    gold = np.asarray(golds[video])
    if pred.shape[0] != gold.shape[0]:
        raise ValueError(f"video {video!r}: {pred.shape[0]} predicted frames, {gold.shape[0]} gold frames")
    mask = _valid_rows(video, gold, valid, task)
    return pred[mask], gold[mask]


def concatenate_valid(
    preds: Mapping[str, Any],
    golds: Mapping[str, Any],
    valid: Mapping[str, Any] | None = None,
    *,
    task: TaskSpec | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The organisers' evaluation set: the valid frames of every gold video, concatenated in sorted video-id order.

    ``preds`` and ``golds`` map video id -> per-frame arrays of equal length T_v ((T_v,), (T_v, 2) or (T_v, K)).
    A frame is scored when ``valid[video]`` ((T_v,) bool) is True; without ``valid`` the frames whose gold is not the
    task's invalid code (``task.valid``); with neither, every frame. Every gold video must have a prediction; extra
    predicted videos are ignored. Returns ``(pred, gold)`` of shape (sum of valid frames, ...).
    """
    videos = sorted(golds)
    if not videos:
        raise ValueError("concatenate_valid: no gold videos")
    pairs = [_video_frames(video, preds, golds, valid, task) for video in videos]
    return np.concatenate([p for p, _ in pairs]), np.concatenate([g for _, g in pairs])


def per_video(
    score_fn: Callable[..., Any],
    preds: Mapping[str, Any],
    golds: Mapping[str, Any],
    valid: Mapping[str, Any] | None = None,
    *,
    task: TaskSpec | None = None,
    **score_kwargs: Any,
) -> dict[str, Any]:
    """``{video id: score_fn(pred_v, gold_v, **score_kwargs)}`` over each gold video's valid frames.

    Arguments and the choice of valid frames are as in :func:`concatenate_valid`; e.g.
    ``per_video(expr_score, preds, golds, protocol="abaw2020")``. A video with no valid frame has no defined score
    and is left out of the result.
    """
    scores = {}
    for video in sorted(golds):
        pred, gold = _video_frames(video, preds, golds, valid, task)
        if pred.shape[0]:
            scores[video] = score_fn(pred, gold, **score_kwargs)
    return scores


def mean_over_videos(scores: Mapping[str, Any]) -> Any:
    """Unweighted mean of :func:`per_video` results: a float for float scores, a dict for dict scores.

    For dict scores every scalar entry is averaged and list entries (``f1_per_au``) are averaged element-wise. This is
    a diagnostic view, not the challenge number (which :func:`concatenate_valid` gives).
    """
    values = list(scores.values())
    if not values:
        raise ValueError("mean_over_videos: no scores")
    if not isinstance(values[0], Mapping):
        return float(np.mean(values))
    return {
        key: (np.mean([v[key] for v in values], axis=0).tolist() if isinstance(values[0][key], list)
              else float(np.mean([v[key] for v in values])))
        for key in values[0]
    }


def task_scores(decisions: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, Mapping[str, np.ndarray]],
                    masks: Mapping[str, Mapping[str, np.ndarray]], tasks: Mapping[str, TaskSpec],
                    video_ids: Sequence[str]) -> dict[str, Any]:
    """Scores of per-frame decisions under the trainer's metric names, over the masked frames of ``video_ids``
    concatenated (the organisers' way), for the tasks with any: ``valence``, ``arousal``, ``va_mean``, ``expr_f1``,
    ``expr_accuracy``, ``expr_score``, ``au_f1``, ``au_accuracy``, ``au_score``, ``au_f1_per_au``.

    ``decisions``/``labels``/``masks``: video id -> task -> per-frame decisions (VA values, class index, AU 0/1) /
    gold in the organisers' coding / (T,) bool frames to score.
    """
    result: dict[str, Any] = {}
    for name, task in tasks.items():
        pairs = [(decisions[v][name][masks[v][name]], labels[v][name][masks[v][name]]) for v in video_ids
                 if name in decisions.get(v, {}) and name in masks.get(v, {}) and masks[v][name].any()]
        if not pairs:
            continue
        pred = np.concatenate([p for p, _ in pairs])
        gold = np.concatenate([g for _, g in pairs])
        if name == "va":
            va = va_score(pred, gold)
            result |= {"valence": va["valence"], "arousal": va["arousal"], "va_mean": va["mean"]}
        elif name == "expr":
            expr = expr_score(pred, gold, task.protocol, n_classes=task.n_outputs)
            result |= {"expr_f1": expr["f1"], "expr_accuracy": expr["accuracy"], "expr_score": expr["score"]}
        else:
            au = au_score(pred, gold.astype(np.int64), task.protocol)
            result |= {"au_f1": au["f1"], "au_accuracy": au["accuracy"], "au_score": au["score"],
                       "au_f1_per_au": [float(f) for f in au["f1_per_au"]]}
    return {k: v if isinstance(v, list) else float(v) for k, v in result.items()}


def mean_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The mean of each scalar score over ``rows`` (e.g. folds), over the rows that have it."""
    keys = sorted({k for r in rows for k, v in r.items() if not isinstance(v, list)})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
