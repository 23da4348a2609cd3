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
from eval.labels import LabelError, fit_to_frames, load_labels
from eval.predictions import PredictionError, read_predictions
from eval.runs import model_dirs
from eval.tasks import TaskSpec, tasks_from_json
from features_store import FeatureStore, StoreError

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


def scores(decisions: Decisions, labels: Decisions, masks: Decisions, tasks: Mapping[str, TaskSpec]) -> dict:
    """``overall`` (concatenated), ``per_video`` and the frames scored per task."""
    video_ids = sorted(v for v in masks if v in decisions)
    per_video = {v: metrics.task_scores(decisions, labels, masks, tasks, [v]) for v in video_ids}
    return {"overall": metrics.task_scores(decisions, labels, masks, tasks, video_ids),
            "per_video": {v: s for v, s in per_video.items() if s},
            "frames_scored": {t: int(sum(masks[v][t].sum() for v in video_ids if t in masks[v])) for t in tasks}}


def scoreable_labels(label_source: str, label_columns: Mapping[str, str] | None, tasks: Sequence[str],
                     n_frames: Mapping[str, int]) -> tuple[dict[str, TaskSpec], Decisions, Decisions, list[str]]:
    """Labels aligned to the predictions' frames and the masks of the frames that can be scored: valid labels that
    the label files really hold (rows the trainer's alignment padded by repetition are not scored)."""
    label_set = load_labels(label_source, list(tasks) or None, label_columns or None)
    aligned, messages = fit_to_frames(label_set, n_frames)
    masks = {}
    for vid, by_task in aligned.items():
        masks[vid] = {}
        for task, labels in by_task.items():
            valid = label_set.tasks[task].valid(labels)
            given = label_set.labels.get(vid, {}).get(task)
            if given is not None and vid not in label_set.per_clip:
                valid[len(given):] = False
            masks[vid][task] = valid
    return label_set.tasks, aligned, masks, messages


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


def _store_frames(store_location: str | None, video_ids: Sequence[str]) -> dict[str, int]:
    """Each video's frame count in the store (the submission length), for the videos it holds."""
    if not store_location:
        return {}
    try:
        frames = FeatureStore(store_location).complete_n_frames()
    except StoreError as exc:
        LOG.warning("submission lengths from the predictions: %s", exc)
        return {}
    return {v: frames[v] for v in video_ids if v in frames}


def _lengths(per_fold: Sequence[Decisions]) -> dict[str, int]:
    """Frames per video, checked to agree across folds and tasks."""
    n_frames: dict[str, int] = {}
    for predictions in per_fold:
        for vid, by_task in predictions.items():
            for task, rows in by_task.items():
                if n_frames.setdefault(vid, len(rows)) != len(rows):
                    raise PredictionError(f"video {vid}: {task} predictions have {len(rows)} frames, other "
                                          f"predictions of it {n_frames[vid]}")
    return n_frames


def evaluate_folder(predictions_dir: Path, label_source: str, label_columns: Mapping[str, str] | None = None,
                    tasks: Sequence[str] = (), store: str | None = None) -> Evaluation:
    """Score every labelled frame of the prediction CSVs in ``predictions_dir``."""
    label_set_tasks = load_labels(label_source, list(tasks) or None, label_columns or None).tasks
    predictions = read_predictions(predictions_dir, label_set_tasks)
    n_frames = _lengths([predictions])
    spec, labels, masks, messages = scoreable_labels(label_source, label_columns, list(label_set_tasks), n_frames)
    if not labels:
        raise LabelError(f"{label_source}: labels none of the {len(predictions)} videos predicted in "
                         f"{predictions_dir}")
    result = scores(predictions, labels, masks, spec)
    result |= {"scored": "every labelled frame", "label_messages": messages,
               "source": {"predictions": str(predictions_dir), "labels": label_source, "store": store}}
    return Evaluation(f"{predictions_dir}", spec, predictions, labels, masks, result, predictions,
                      _frame_times(store, list(labels)), {**n_frames, **_store_frames(store, list(n_frames))})


def fuse_folds(per_fold: Sequence[Decisions], tasks: Mapping[str, TaskSpec], pre_smooth: bool = False,
               post_smooth: bool = False) -> Decisions:
    """One prediction per video from every fold's: CCC-centering per VA dimension, majority vote for EXPR and AU.
    A video (or task) only some folds predicted is fused from those folds, with a warning."""
    fused: Decisions = {}
    for vid in sorted(set().union(*per_fold)):
        fused[vid] = {}
        for name in sorted({t for p in per_fold for t in p.get(vid, {})}):
            available = [p[vid][name] for p in per_fold if name in p.get(vid, {})]
            if len(available) < len(per_fold):
                LOG.warning("fusion: %s %s predicted by %d of %d folds", vid, name, len(available), len(per_fold))
            stacked = np.stack(available)
            if name == "va":
                fused[vid][name] = np.stack([ccc_centering(stacked[:, :, d], pre_smooth, post_smooth)
                                             for d in range(stacked.shape[2])], axis=1).astype(np.float32)
            else:
                fused[vid][name] = majority_vote(stacked, tasks[name].n_outputs if name == "expr" else None)
    return fused


def evaluate_run(run_dir: Path, pre_smooth: bool = False, post_smooth: bool = False) -> Evaluation:
    """Score a training run: its validation videos (out of fold when it has several folds)."""
    fold_dirs = model_dirs(run_dir, marker="config.json")
    configs = [json.loads((d / "config.json").read_text()) for d in fold_dirs]
    first = configs[0]
    per_fold = [read_predictions(d / "predictions", tasks_from_json(first["tasks"])) for d in fold_dirs]
    n_frames = _lengths(per_fold)
    tasks, labels, scoreable, messages = scoreable_labels(first["labels"], first.get("label_columns"),
                                                          list(first["tasks"]), n_frames)

    def role_masks(config: dict, role: str) -> Decisions:
        fold = config["fold"]
        if "roles" in fold:
            return {v: {t: m & (fold["roles"].get(t, {}).get(v) == role) for t, m in by_task.items()}
                    for v, by_task in scoreable.items()}
        return {v: {t: m & (v in fold[role]) for t, m in by_task.items()}  # runs from before roles were kept
                for v, by_task in scoreable.items()}

    fold_scores = []
    scored: Decisions = {}
    scored_masks: Decisions = {v: {t: np.zeros_like(m) for t, m in by_task.items()} for v, by_task in scoreable.items()}
    for config, predictions in zip(configs, per_fold):
        val = role_masks(config, "val")
        fold_scores.append({"fold": config["fold"]["index"], "val": scores(predictions, labels, val, tasks)["overall"],
                            "train": scores(predictions, labels, role_masks(config, "train"), tasks)["overall"]})
        for vid, by_task in val.items():
            for task, mask in by_task.items():
                if not mask.any():
                    continue
                if task not in predictions.get(vid, {}):
                    LOG.warning("fold %s validates %s on %s but did not predict it: not scored",
                                config["fold"]["index"], vid, task)
                    continue
                scored.setdefault(vid, {})[task] = predictions[vid][task]
                scored_masks[vid][task] = mask
    note = "validation videos" + (" (out of fold)" if len(fold_dirs) > 1 else "")
    if not scored:
        LOG.warning("%s: no validation frames; scoring fold 0's training videos instead", run_dir)
        note = f"training videos of fold {configs[0]['fold']['index']} (the run had no validation videos)"
        scored = {v: dict(by_task) for v, by_task in per_fold[0].items()}
        scored_masks = role_masks(configs[0], "train")
    for vid in labels:  # tasks a video was not scored on still get a prediction for the report's timelines
        for task, rows in per_fold[0].get(vid, {}).items():
            scored.setdefault(vid, {}).setdefault(task, rows)
    result = scores(scored, labels, scored_masks, tasks)
    result |= {"scored": note, "folds": fold_scores, "label_messages": messages,
               "source": {"run": str(run_dir), "labels": first["labels"], "store": first["store"]}}
    if len(fold_dirs) > 1:
        result["fold_mean"] = {role: metrics.mean_scores([f[role] for f in fold_scores]) for role in ("train", "val")}
    submission = fuse_folds(per_fold, tasks, pre_smooth, post_smooth) if len(fold_dirs) > 1 else per_fold[0]
    return Evaluation(f"{first['model']['name']} on {'+'.join(first['features'])} ({run_dir.name})", tasks,
                      scored, labels, scored_masks, result, submission, _frame_times(first["store"], list(labels)),
                      {**n_frames, **_store_frames(first["store"], list(n_frames))})
