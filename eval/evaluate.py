"""Evaluation of per-frame predictions against labels: the organisers' scores, per-video views, fold handling.

Two sources:

- a run of ``python -m train`` (:func:`evaluate_run`): one fold is scored on its validation videos (per task, as the
  fold's roles say); several folds are scored out of fold (each video by the fold that held it out), fold by fold,
  and their predictions are fused for every video (CCC-centering for VA, majority vote for EXPR/AU) for submission;
- a folder of prediction CSVs and a label source (:func:`evaluate_folder`): every labelled frame is scored.

Metric names are the trainer's (``valence``, ``arousal``, ``va_mean``, ``expr_f1``, ``expr_accuracy``,
``expr_score``, ``au_f1``, ``au_accuracy``, ``au_score``, ``au_f1_per_au``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval import metrics
from eval.fusion import ccc_centering, majority_vote
from eval.predictions import read_predictions
from features_store import FeatureStore, StoreError
from train.labels import fit_to_frames, load_labels
from train.tasks import TaskSpec

LOG = logging.getLogger("affectsync.eval")

Decisions = dict[str, dict[str, np.ndarray]]  # video id -> task -> per-frame decisions (or labels, or masks)


@dataclass
class Evaluation:
    """What was scored and how it scored; ``submission`` holds the predictions to submit (fused across folds)."""

    title: str
    tasks: dict[str, TaskSpec]
    predictions: Decisions
    labels: Decisions
    masks: Decisions
    metrics: dict[str, Any]
    submission: Decisions
    frame_time: dict[str, np.ndarray] = field(default_factory=dict)
    n_frames: dict[str, int] = field(default_factory=dict)


def score_decisions(decisions: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, Mapping[str, np.ndarray]],
                    masks: Mapping[str, Mapping[str, np.ndarray]], tasks: Mapping[str, TaskSpec],
                    video_ids: Sequence[str]) -> dict[str, Any]:
    """Scores over the masked frames of ``video_ids`` concatenated (the organisers' way), for the tasks with any."""
    result: dict[str, Any] = {}
    for name, task in tasks.items():
        pairs = [(decisions[v][name][masks[v][name]], labels[v][name][masks[v][name]]) for v in video_ids
                 if name in decisions.get(v, {}) and name in masks.get(v, {}) and masks[v][name].any()]
        if not pairs:
            continue
        pred = np.concatenate([p for p, _ in pairs])
        gold = np.concatenate([g for _, g in pairs])
        if name == "va":
            va = metrics.va_score(pred, gold)
            result |= {"valence": va["valence"], "arousal": va["arousal"], "va_mean": va["mean"]}
        elif name == "expr":
            expr = metrics.expr_score(pred, gold, task.protocol, n_classes=task.n_outputs)
            result |= {"expr_f1": expr["f1"], "expr_accuracy": expr["accuracy"], "expr_score": expr["score"]}
        else:
            au = metrics.au_score(pred, gold.astype(np.int64), task.protocol)
            result |= {"au_f1": au["f1"], "au_accuracy": au["accuracy"], "au_score": au["score"],
                       "au_f1_per_au": [float(f) for f in au["f1_per_au"]]}
    return {k: v if isinstance(v, list) else float(v) for k, v in result.items()}


def scores(decisions: Decisions, labels: Decisions, masks: Decisions, tasks: Mapping[str, TaskSpec]) -> dict:
    """``overall`` (concatenated), ``per_video`` and the frames scored per task."""
    video_ids = sorted(v for v in masks if v in decisions)
    per_video = {v: score_decisions(decisions, labels, masks, tasks, [v]) for v in video_ids}
    return {"overall": score_decisions(decisions, labels, masks, tasks, video_ids),
            "per_video": {v: s for v, s in per_video.items() if s},
            "frames_scored": {t: int(sum(masks[v][t].sum() for v in video_ids if t in masks[v])) for t in tasks}}


def _aligned_labels(label_source: str, label_columns: Mapping[str, str] | None, tasks: Sequence[str],
                    n_frames: Mapping[str, int]) -> tuple[dict[str, TaskSpec], Decisions, list[str]]:
    label_set = load_labels(label_source, list(tasks) or None, label_columns or None)
    aligned, messages = fit_to_frames(label_set, n_frames)
    return label_set.tasks, aligned, messages


def _frame_times(store_location: str | None, video_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Frame times from the store when it can be opened (timelines in seconds), else nothing (frame indices)."""
    if not store_location:
        return {}
    try:
        store = FeatureStore(store_location)
        return {v: store.video(v).read("frame_time") for v in video_ids if v in store}
    except StoreError as exc:
        LOG.warning("timelines in frames: %s", exc)
        return {}


def evaluate_folder(predictions_dir: Path, label_source: str, label_columns: Mapping[str, str] | None = None,
                    tasks: Sequence[str] = (), store: str | None = None) -> Evaluation:
    """Score every labelled frame of the prediction CSVs in ``predictions_dir``."""
    label_tasks = load_labels(label_source, list(tasks) or None, label_columns or None).tasks
    predictions = read_predictions(predictions_dir, label_tasks)
    n_frames = {v: len(next(iter(by_task.values()))) for v, by_task in predictions.items()}
    spec, labels, messages = _aligned_labels(label_source, label_columns, list(label_tasks), n_frames)
    masks = {v: {t: spec[t].valid(labels[v][t]) for t in spec} for v in labels}
    result = scores(predictions, labels, masks, spec)
    result |= {"source": {"predictions": str(predictions_dir), "labels": label_source}, "label_messages": messages}
    return Evaluation(f"{predictions_dir}", spec, predictions, labels, masks, result, predictions,
                      _frame_times(store, list(predictions)), n_frames)


def _fold_dirs(run_dir: Path) -> list[Path]:
    if (run_dir / "config.json").is_file():
        return [run_dir]
    folds = sorted((p for p in run_dir.glob("fold*") if (p / "config.json").is_file() and p.name[4:].isdigit()),
                   key=lambda p: int(p.name[4:]))
    if not folds:
        raise FileNotFoundError(f"{run_dir}: not a run directory of python -m train (no config.json here or in "
                                f"fold*/)")
    return folds


def fuse_folds(per_fold: Sequence[Decisions], tasks: Mapping[str, TaskSpec], pre_smooth: bool = False,
               post_smooth: bool = False) -> Decisions:
    """One prediction per video from every fold's: CCC-centering per VA dimension, majority vote for EXPR and AU.
    Only videos every fold predicted are fused."""
    common = set.intersection(*(set(p) for p in per_fold))
    fused: Decisions = {}
    for vid in sorted(common):
        fused[vid] = {}
        for name in per_fold[0][vid]:
            stacked = np.stack([p[vid][name] for p in per_fold])
            if name == "va":
                fused[vid][name] = np.stack([ccc_centering(stacked[:, :, d], pre_smooth, post_smooth)
                                             for d in range(stacked.shape[2])], axis=1).astype(np.float32)
            else:
                fused[vid][name] = majority_vote(stacked, tasks[name].n_outputs if name == "expr" else None)
    return fused


def evaluate_run(run_dir: Path, pre_smooth: bool = False, post_smooth: bool = False) -> Evaluation:
    """Score a training run: its validation videos (out of fold when it has several folds)."""
    fold_dirs = _fold_dirs(run_dir)
    configs = [json.loads((d / "config.json").read_text()) for d in fold_dirs]
    first = configs[0]
    run_tasks = {name: TaskSpec(name, tuple(s["columns"]), s["protocol"]) for name, s in first["tasks"].items()}
    per_fold = [read_predictions(d / "predictions", run_tasks) for d in fold_dirs]
    n_frames = {v: len(next(iter(by_task.values()))) for p in per_fold for v, by_task in p.items()}
    tasks, labels, messages = _aligned_labels(first["labels"], first.get("label_columns"), list(run_tasks), n_frames)
    valid = {v: {t: tasks[t].valid(labels[v][t]) for t in tasks} for v in labels}

    def role_masks(config: dict, role: str) -> Decisions:
        fold = config["fold"]
        if "roles" in fold:
            return {v: {t: valid[v][t] & (fold["roles"].get(t, {}).get(v) == role) for t in tasks} for v in labels}
        return {v: {t: valid[v][t] & (v in fold[role]) for t in tasks} for v in labels}  # runs before roles were kept

    fold_scores = []
    oof_predictions: Decisions = {}
    oof_masks: Decisions = {v: {t: np.zeros_like(valid[v][t]) for t in tasks} for v in labels}
    for config, predictions in zip(configs, per_fold):
        val = role_masks(config, "val")
        fold_scores.append({"fold": config["fold"]["index"], "val": scores(predictions, labels, val, tasks)["overall"],
                            "train": scores(predictions, labels, role_masks(config, "train"), tasks)["overall"]})
        for v in labels:
            for t in tasks:
                if val[v][t].any() and v in predictions:
                    oof_predictions.setdefault(v, {})[t] = predictions[v][t]
                    oof_masks[v][t] = val[v][t]
    scored_masks = oof_masks
    note = "validation videos" + (" (out of fold)" if len(fold_dirs) > 1 else "")
    if not any(m.any() for by_task in oof_masks.values() for m in by_task.values()):
        LOG.warning("%s: no validation frames; scoring the training videos instead", run_dir)
        note = "training videos (the run had no validation videos)"
        oof_predictions, scored_masks = per_fold[0], role_masks(configs[0], "train")
    for v in labels:  # fill tasks a video was not validated on, so every video has every task's arrays
        for t in tasks:
            oof_predictions.setdefault(v, {}).setdefault(t, per_fold[0].get(v, {}).get(t))
    oof_predictions = {v: {t: p for t, p in by_task.items() if p is not None} for v, by_task in oof_predictions.items()}
    result = scores(oof_predictions, labels, scored_masks, tasks)
    result |= {"scored": note, "folds": fold_scores, "label_messages": messages,
               "source": {"run": str(run_dir), "labels": first["labels"], "store": first["store"]}}
    if len(fold_dirs) > 1:
        result["fold_mean"] = {role: _mean([f[role] for f in fold_scores]) for role in ("train", "val")}
    submission = fuse_folds(per_fold, tasks, pre_smooth, post_smooth) if len(fold_dirs) > 1 else per_fold[0]
    store_frames = _store_frames(first["store"], list(n_frames))
    return Evaluation(f"{first['model']['name']} on {'+'.join(first['features'])} ({run_dir.name})", tasks,
                      oof_predictions, labels, scored_masks, result, submission,
                      _frame_times(first["store"], list(labels)), {**n_frames, **store_frames})


def _store_frames(store_location: str, video_ids: Sequence[str]) -> dict[str, int]:
    try:
        frames = FeatureStore(store_location).complete_n_frames()
    except StoreError:
        return {}
    return {v: frames[v] for v in video_ids if v in frames}


def _mean(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    keys = sorted({k for r in rows for k, v in r.items() if not isinstance(v, list)})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
