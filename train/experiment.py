"""One training run: labels aligned to a store, folds, one model per fold, and the run directory.

``runs/<name>/`` (one fold) or ``runs/<name>/fold<k>/`` (``FOLDS`` > 1) each hold:
``config.json`` (everything needed to rebuild the model and its inputs), ``model.pt`` (a plain state dict, loadable
with ``torch.load(..., weights_only=True)``), ``normalisation.npz`` (per-modality mean/std fitted on the training
videos), ``metrics.json`` (``{"epochs": [...], "final": {"train": {...}, "val": {...}}}``), ``training_curve.png``
and ``predictions/<video_id>.csv`` for every labelled video (kept per fold for eval's fusion). With several folds,
``runs/<name>/metrics.json`` lists each fold's final scores and their mean.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.labels import LabelSet, fit_to_frames, load_labels
from eval.metrics import mean_scores
from eval.tasks import TaskSpec, tasks_to_json
from features_store import FeatureStore
from features_store.common import now_utc, pick_device
from features_store.errors import AffectsyncError
from train.clips import ClipSpec
from train.features import StoreFeatures, Standardiser
from train.folds import Fold, make_folds, without_cross_task_training
from train.loop import FoldData, OptimConfig, TrainResult, fit, seed_everything
from train.losses import LossConfig, au_pos_weight
from train.models import (DEFAULT_MODEL, MODELS, build_model, count_parameters, model_config,
                          model_config_dict)
from train.plots import training_curve
from train.predict import write_prediction_csvs
from train.pseudo_labels import EpochPseudoLabels, filter_inconsistent, fit_va_histograms
from train.stages import freeze, init_from_run
from train.tricks import TricksConfig, expr_logit_offsets
from train.windows import WindowConfig

LOG = logging.getLogger("affectsync.train")


class TrainError(AffectsyncError, ValueError):
    """A run cannot start: nothing to train on, a bad model setting, or the run directory is taken."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run depends on; written to ``config.json``."""

    store: str
    labels: str
    features: tuple[str, ...] = ()
    tasks: tuple[str, ...] | None = None
    label_columns: Mapping[str, str] = field(default_factory=dict)
    model: str = DEFAULT_MODEL
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    folds: int = 1
    window: WindowConfig = WindowConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    tricks: TricksConfig = TricksConfig()
    filter_labels: bool = False
    pseudo_labels: tuple[str, ...] = ()
    """TSAV's VA pseudo-labels: the components filled (``("valence",)``, TSAV's choice; ``()``: none)."""
    strict_labels: bool = False
    protocol: str | None = None
    cross_task_rule: bool = True
    recipe: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """The settings given besides the recipe's (recorded in config.json)."""
    device: str = "auto"
    init_from: str | None = None
    """A previous run whose matching weights the model starts from (:mod:`train.stages`)."""
    freeze: tuple[str, ...] = ()
    """Modules kept as they are (e.g. ``visual`` after ``init_from``)."""


def trainable_features(store: FeatureStore, video_ids: Sequence[str]) -> list[str]:
    """The default FEATURES: per-frame (T, D) features present in every one of ``video_ids`` that are an
    extractor's main output (so ``face_box`` or ``landmarks68``, geometry beside ``face_crop``, are left out)."""
    def main_feature(array) -> bool:
        attrs = array.attrs
        return bool(attrs.get("per_frame")) and array.ndim == 2 and (
            (attrs.get("provenance") or {}).get("feature") == array.basename)

    common = None
    for vid in video_ids:
        video = store.video(vid)
        names = {name for name in video.array_names() if main_feature(video.array(name))}
        common = names if common is None else common & names
    return sorted(common or ())


def label_masks(fold: Fold, tasks: Mapping[str, TaskSpec], labels: Mapping[str, Mapping[str, np.ndarray]],
                role: str) -> dict[str, dict[str, np.ndarray]]:
    """video id -> task -> (T,) bool: valid labels of the videos that have ``role`` for that task in ``fold``."""
    return {vid: {task: spec.valid(by_task[task]) & (fold.roles.get(task, {}).get(vid) == role)
                  for task, spec in tasks.items()}
            for vid, by_task in labels.items()}


def tsav_label_rules(config: ExperimentConfig, tasks: Mapping[str, TaskSpec], labels: dict, masks: dict,
                     train_ids: Sequence[str]) -> tuple[dict, dict, EpochPseudoLabels | None]:
    """TSAV (seed 004): the labels and masks a fold learns from, with inconsistent VA/EXPR frames dropped
    (``filter_labels``) and VA pseudo-labels for EXPR-only training frames (``pseudo_labels``: the components filled,
    valence by default), which :class:`~train.pseudo_labels.EpochPseudoLabels` draws again each epoch. The labels and
    masks given (those scores use) are not modified."""
    if not ({"va", "expr"} <= tasks.keys() and (config.filter_labels or config.pseudo_labels)):
        return labels, masks, None
    labels = {vid: dict(by_task) for vid, by_task in labels.items()}
    masks = {vid: dict(by_task) for vid, by_task in masks.items()}
    classes = tasks["expr"].columns
    if config.filter_labels:
        for vid in train_ids:
            keep = filter_inconsistent(labels[vid]["va"], labels[vid]["expr"], classes)
            for task in ("va", "expr"):
                masks[vid][task] = masks[vid][task] & keep
    if not config.pseudo_labels:
        return labels, masks, None
    both = [(labels[v]["va"][masks[v]["va"] & masks[v]["expr"]], labels[v]["expr"][masks[v]["va"] & masks[v]["expr"]])
            for v in train_ids]
    if not sum(len(va) for va, _ in both):
        LOG.warning("pseudo-labels: no training frame has both VA and EXPR labels; no VA pseudo-labels made")
        return labels, masks, None
    histograms = fit_va_histograms(np.concatenate([va for va, _ in both]),
                                   np.concatenate([expr for _, expr in both]), len(classes))
    frames = {}
    for vid in train_ids:
        expr_only = masks[vid]["expr"] & ~tasks["va"].valid(labels[vid]["va"])
        if expr_only.any():
            frames[vid] = expr_only
            labels[vid]["va"] = labels[vid]["va"].copy()
            masks[vid]["va"] = masks[vid]["va"] | expr_only
    pseudo = EpochPseudoLabels(labels, frames, histograms, config.pseudo_labels, config.optim.seed)
    LOG.info("pseudo-labels (%s) for %d expression-only training frames, drawn again each epoch",
             "+".join(config.pseudo_labels), sum(int(f.sum()) for f in frames.values()))
    return labels, masks, pseudo


class Experiment:
    """Loads the store and labels once (labels aligned to the store's frames, features, folds), then trains each
    fold into ``run_dir``. Without a ``run_dir`` it only prepares the data (e.g. for the Keras dataset)."""

    def __init__(self, config: ExperimentConfig, run_dir: Path | None = None, progress: bool = True):
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.device = pick_device(config.device)
        self.store = FeatureStore(config.store)
        self.label_set: LabelSet = load_labels(config.labels, config.tasks, config.label_columns or None,
                                               protocol=config.protocol, strict=config.strict_labels)
        self.label_report = {source: dict(counts) for source, counts in self.label_set.out_of_range.items()}
        """File -> task -> rows whose labels lay outside the task's coding and were masked."""
        complete = self.store.complete_n_frames()
        self.labels, self.label_messages = fit_to_frames(self.label_set, complete)
        if not self.labels:
            raise TrainError(f"no labelled video of {config.labels} is in the store {config.store} "
                             f"(labels name {len(self.label_set.video_ids())} videos, the store has {len(complete)})")
        self.video_ids = sorted(self.labels)
        self.tasks = self.label_set.tasks
        features = list(config.features) or trainable_features(self.store, self.video_ids)
        try:  # a wrong --set field or model name fails now, not after the data is loaded
            model_settings = model_config(config.model, **dict(config.model_overrides))
        except ValueError as exc:
            raise TrainError(f"model {config.model!r}: {exc}") from exc
        self.features = StoreFeatures(self.store, features, self.video_ids, clips=ClipSpec.of(model_settings),
                                      group_by=MODELS[config.model].group_by)
        labelled = {task: [vid for vid in self.video_ids if spec.valid(self.labels[vid][task]).any()]
                    for task, spec in self.tasks.items()}
        self.folds = make_folds(labelled, self.label_set.splits, config.folds)
        self.cross_task_dropped: dict[int, dict[str, list[str]]] = {}
        if config.cross_task_rule:  # seed 001: a video validating any task trains none in that fold
            for k, fold in enumerate(self.folds):
                self.folds[k], dropped = without_cross_task_training(fold)
                if dropped:
                    self.cross_task_dropped[fold.index] = dropped
                    LOG.info("fold %d: %d video(s) validate a task, so they train no task there: %s", fold.index,
                             len({v for videos in dropped.values() for v in videos}),
                             "; ".join(f"{task}: {', '.join(videos)}" for task, videos in dropped.items()))
        try:  # inputs the model cannot take, or modules it lacks, fail now, not after the data is loaded into a fold
            model = build_model(config.model, self.features.model_inputs, list(self.tasks.values()),
                                **dict(config.model_overrides))
            freeze(model, config.freeze)
        except ValueError as exc:
            raise TrainError(f"model {config.model!r}: {exc}") from exc

    def fold_dir(self, fold: Fold) -> Path:
        return self.run_dir if len(self.folds) == 1 else self.run_dir / f"fold{fold.index}"

    def run(self) -> Path:
        """Train every fold; returns the run directory (which must not exist yet, or be empty)."""
        if self.run_dir is None:
            raise TrainError("no run directory given")
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise TrainError(f"{self.run_dir} already holds a run; choose another name (NAME=/--name)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        summaries = [self.train_fold(fold) for fold in self.folds]
        if len(self.folds) > 1:
            summary = {"folds": [{"fold": f.index, **s} for f, s in zip(self.folds, summaries)],
                       "final": {role: mean_scores([s[role] for s in summaries]) for role in ("train", "val")},
                       "label_report": self.label_report}
            (self.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        return self.run_dir

    def train_fold(self, fold: Fold) -> dict[str, dict[str, float]]:
        out = self.fold_dir(fold)
        out.mkdir(parents=True, exist_ok=True)
        train_ids, val_ids = fold.videos("train"), fold.videos("val")
        if not train_ids:
            raise TrainError(f"fold {fold.index} has no training video (labelled videos: {self.video_ids})")
        standardiser = self.features.fit_standardiser(train_ids)  # every video with a training role, any task
        train_masks = label_masks(fold, self.tasks, self.labels, "train")
        val_masks = label_masks(fold, self.tasks, self.labels, "val")  # as loaded: pseudo-labels never score
        learn_labels, learn_masks, pseudo = tsav_label_rules(self.config, self.tasks, self.labels, train_masks,
                                                             train_ids)
        pos_weight = None
        if "au" in self.tasks and self.config.loss.au_positive_weights:
            rows = np.concatenate([self.labels[v]["au"][train_masks[v]["au"]] for v in train_ids])
            pos_weight = au_pos_weight(rows).astype(np.float32)
        logit_offsets = None
        if "expr" in self.tasks:
            classes = np.concatenate([learn_labels[v]["expr"][learn_masks[v]["expr"]] for v in train_ids])
            logit_offsets = expr_logit_offsets(classes, self.tasks["expr"].n_outputs,
                                               self.config.tricks.logit_adjustment_tau)
        data = FoldData(self.features, self.tasks, self.labels, train_masks, val_masks, train_ids, val_ids, pos_weight,
                        learn_labels, learn_masks, pseudo, logit_offsets)
        seed_everything(self.config.optim.seed + fold.index)  # the initial weights too are reproducible
        model = build_model(self.config.model, self.features.model_inputs, list(self.tasks.values()),
                            **dict(self.config.model_overrides))
        if self.config.init_from:
            init_from_run(model, self.config.init_from, fold.index)
        if self.config.freeze:
            freeze(model, self.config.freeze)
        LOG.info("fold %d: %d training and %d validation videos, model %s with %d parameters", fold.index,
                 len(train_ids), len(val_ids), self.config.model, count_parameters(model))
        result = fit(model, data, self.config.window, self.config.optim, self.config.loss, self.device,
                     self.progress, self.config.tricks)
        self.save(out, fold, result, standardiser, train_ids, val_ids)
        return result.final

    def save(self, out: Path, fold: Fold, result: TrainResult, standardiser: Standardiser,
             train_ids: list[str], val_ids: list[str]) -> None:
        torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, out / "model.pt")
        standardiser.save(out / "normalisation.npz")
        config = {
            "affectsync_version": metadata.version("affectsync"),
            "created_utc": now_utc(),
            "store": self.config.store,
            "labels": self.config.labels,
            "label_columns": dict(self.config.label_columns),
            "features": self.features.features,
            "feature_recipes": self.features.recipes,
            "modalities": self.features.modalities,
            "modality_dims": self.features.model_inputs,
            "tasks": tasks_to_json(self.tasks),
            "model": model_config_dict(result.model),
            "parameters": count_parameters(result.model),
            "window": dataclasses.asdict(self.config.window),
            "optim": dataclasses.asdict(self.config.optim),
            "loss": dataclasses.asdict(self.config.loss),
            "tricks": dataclasses.asdict(self.config.tricks),
            "post_processing": {**result.post_processing.to_json(), "chosen_on": result.selected_on,
                                "scores_before": result.selection_before_post_processing,
                                "scores_after": (result.final[result.selected_on]
                                                 if self.config.tricks.chooses_post_processing else {})},
            "filter_labels": self.config.filter_labels,
            "pseudo_labels": list(self.config.pseudo_labels),
            "strict_labels": self.config.strict_labels,
            "protocol": self.config.protocol,
            "cross_task_rule": self.config.cross_task_rule,
            "recipe": self.config.recipe,
            "overrides": dict(self.config.overrides),
            "label_report": self.label_report,
            "fold": {"index": fold.index, "of": len(self.folds), "train": train_ids, "val": val_ids,
                     "roles": {task: dict(by_video) for task, by_video in fold.roles.items()},
                     "cross_task_dropped": self.cross_task_dropped.get(fold.index, {})},
            "label_messages": self.label_messages,
            "device": str(self.device),
            "init_from": self.config.init_from,
            "freeze": list(self.config.freeze),
            "pretrained_sha256": dict(getattr(result.model, "pretrained_sha256", {})),
        }
        (out / "config.json").write_text(json.dumps(config, indent=2))
        metrics = {"epochs": result.epochs, "final": result.final, "best_epoch": result.best_epoch,
                   "selected_on": result.selected_on, "label_report": self.label_report}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        training_curve(result.epochs, result.best_epoch, out / "training_curve.png",
                       f"{self.config.model} on {'+'.join(self.features.features)} (fold {fold.index})")
        write_prediction_csvs(result.predictions, self.tasks, out / "predictions", self.features.frame_time,
                              result.post_processing)
