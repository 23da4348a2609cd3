"""The seeds' training recipes by name (``RECIPE=abaw3``, ``--recipe``): model, windows, optimiser, schedule, loss,
batch and accumulation, epochs, warm-up, stopping, label rules and folds, each value traced to its paper section.

A recipe sets the sections of ``config.json`` (``model``, ``window``, ``optim``, ``loss``, ``labels``, ``tricks``,
``folds``; the seeds use no trick of :mod:`train.tricks`, so every recipe lists them off and any can turn them on);
what it does not set keeps affectsync's default, and anything the user gives on the command line replaces the
recipe's value (``config.json`` records the recipe name and those overrides). ``python -m train recipes`` lists every
value of every recipe and where it comes from; a value marked "ours" is one the paper does not give.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from features_store.errors import UsageError
from train.losses import LossConfig
from train.loop import OptimConfig
from train.models import MODELS
from train.tricks import TricksConfig
from train.windows import WindowConfig

OURS = "ours: the paper is silent"


@dataclass(frozen=True)
class LabelRules:
    """How labels are read and used: out-of-range values masked (or, ``strict_labels``, an error); TSAV's filtering
    and VA pseudo-labels (the components filled); the scoring protocol (None: the labels' layout decides); seed 001's
    rule that a video validating any task trains none in that fold."""

    strict_labels: bool = False
    filter_labels: bool = False
    pseudo_labels: tuple[str, ...] = ()
    protocol: str | None = None
    cross_task_rule: bool = True


@dataclass(frozen=True)
class Recipe:
    """One paper's training recipe: ``settings`` maps ``section.field`` (the keys of config.json's sections) to
    ``(value, source)``; every other field keeps its default. ``tasks`` are the ones the paper trained (listed for
    reference: a run trains the tasks its labels have, or TASKS=)."""

    name: str
    paper: str
    model: str
    settings: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    folds: tuple[int, str] = (1, OURS)
    tasks: tuple[tuple[str, ...] | None, str] = (None, "the labels' tasks")

    def section(self, name: str, default: Any) -> Any:
        """The dataclass of section ``name`` (window, optim, loss, labels) with this recipe's values on ``default``."""
        prefix = f"{name}."
        values = {key[len(prefix):]: value for key, (value, _) in self.settings.items() if key.startswith(prefix)}
        return dataclasses.replace(default, **values)

    def window(self) -> WindowConfig:
        return self.section("window", MODELS[self.model].windows)

    def optim(self) -> OptimConfig:
        return self.section("optim", OptimConfig())

    def loss(self) -> LossConfig:
        return self.section("loss", LossConfig())

    def labels(self) -> LabelRules:
        return self.section("labels", LabelRules())

    def tricks(self) -> TricksConfig:
        return self.section("tricks", TricksConfig())

    def listing(self) -> dict[str, Any]:
        """Every value of the recipe by config.json section, and where each comes from (``sources``)."""
        sections = {"window": self.window(), "optim": self.optim(), "loss": self.loss(), "labels": self.labels(),
                    "tricks": self.tricks()}
        listing: dict[str, Any] = {"paper": self.paper, "model": self.model, "folds": self.folds[0],
                                   "tasks": list(self.tasks[0]) if self.tasks[0] else None}
        listing |= {name: _jsonable(dataclasses.asdict(value)) for name, value in sections.items()}
        sources = {"model": f"{self.paper}", "folds": self.folds[1], "tasks": self.tasks[1]}
        for name, value in sections.items():
            for key in dataclasses.asdict(value):
                dotted = f"{name}.{key}"
                sources[dotted] = self.settings[dotted][1] if dotted in self.settings else (
                    f"the {self.model} model's windows" if name == "window"
                    else "ours: a trick of today's ABAW entries, off as in the paper (train.tricks)" if name == "tricks"
                    else OURS + " (affectsync's default)")
        listing["sources"] = sources
        return listing


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


S003 = "seed 003 (ABAW3 co-attention), sec. 3.3-3.4"
S000 = "seed 000 (M3T), sec. III-A and IV-B"
S001 = "seed 001 (ABAW 2021 AU + EXPR), sec. 3.1, 4.2, 4.3"
S002 = "seed 002 (audio-video GRU), sec. 3"
S004 = "seed 004 (TSAV), sec. IV-A, IV-B, V"

TSAV_SETTINGS = {
    "optim.optimizer": ("adam", f"{S004}: Adam"),
    "optim.learning_rate": (1e-3, f"{S004}: learning rate 0.001"),
    "optim.batch_size": (32, f"{S004}: the mini-batch of 320 in 10 parts"),
    "optim.accumulate_batches": (10, f"{S004}: gradients accumulated over the 10 parts (effective 320)"),
    "labels.filter_labels": (True, f"{S004}: filtering of inconsistent labels (sec. IV-B)"),
    "labels.pseudo_labels": (("valence",), f"{S004}: valence pseudo-labels only (Table II)"),
}
M3T_SETTINGS = {
    "window.length_frames": (32, f"{S000}: 32-frame windows"),
    "window.sampling": ("random", f"{S000}: windows sampled from each video"),
    "window.random_windows_per_video": (200, f"{S000}: 200 windows per video per epoch"),
    "optim.batch_size": (64, f"{S000}: batches of 64 clips"),
    "optim.optimizer": ("adam", f"{S000}: Adam with default parameters"),
    "optim.weight_decay": (1e-4, f"{S000}: weight decay 0.0001"),
    "optim.lr_schedule": ("cyclical", f"{S000}: cyclical learning rates (Smith, triangular)"),
    "optim.cyclical_base_lr": (1e-7, f"{S000}: base_lr 1e-7"),
    "optim.cyclical_step_up_epochs": (3.0, f"{S000}: num_step_up = 3 x iterations per epoch"),
    "optim.learning_rate": (1e-3, OURS + " (the cycle's top: Adam's default LR)"),
    "optim.warmup_epochs": (0, f"{S000}: the cycle is the warm-up"),
    "loss.lambda_expr": (0.5, f"{S000}: L = 0.5 (L_V + L_A) + 0.5 L_EXPR (Eq. 4)"),
}

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("abaw3", S003, "tcn_coattention", {
        "window.length_frames": (300, f"{S003}: windows of 300"),
        "window.hop_frames": (200, f"{S003}: hop 200"),
        "optim.batch_size": (2, f"{S003}: batch size 2"),
        "optim.optimizer": ("adam", f"{S003}: Adam"),
        "optim.weight_decay": (1e-3, f"{S003}: weight decay 0.001"),
        "optim.learning_rate": (1e-5, f"{S003}: LR 1e-5"),
        "optim.warmup_epochs": (10, f"{S003}: linear warm-up while epoch <= 10"),
        "optim.lr_schedule": ("plateau", f"{S003}: ReduceLROnPlateau on validation CCC"),
        "optim.plateau_patience": (5, f"{S003}: patience 5"),
        "optim.plateau_factor": (0.1, f"{S003}: factor 0.1"),
        "optim.min_learning_rate": (1e-7, f"{S003}: minimal LR 1e-7 (training done below it)"),
        "optim.epochs": (100, f"{S003}: at most 100 epochs"),
        "optim.early_stopping_patience": (10, f"{S003}: early stopping counter 10"),
        "optim.reload_best_each_epoch": (True, f"{S003}: the best state is loaded at the end of every epoch"),
        "loss.va_loss": ("ccc", f"{S003}: CCC loss"),
    }, folds=(6, f"{S003}: 6-fold cross-validation, fold 0 the official split (CCC-centering in eval)"),
        tasks=(("va",), f"{S003}: valence-arousal")),
    Recipe("seed002", S002, "gru_seed002", {
        "window.length_frames": (15, f"{S002}: 15-frame sequences"),
        "window.hop_frames": (10, f"{S002}: an overlap of 5 frames"),
        "optim.optimizer": ("rmsprop", f"{S002}: RMSprop"),
        "optim.learning_rate": (1e-4, f"{S002}: learning rate kept at 0.0001"),
        "optim.warmup_epochs": (0, OURS + " (no warm-up)"),
        "loss.va_loss": ("mse", f"{S002}: mean squared error (tanh outputs)"),
    }, tasks=(("va",), f"{S002}: valence-arousal")),
    Recipe("seed001", S001, "transformer_seed001", {
        "window.length_frames": (30, f"{S001}: 30 input frames"),
        "optim.optimizer": ("sgd", f"{S001}: SGD with momentum"),
        "optim.momentum": (0.9, OURS + " (the paper says 'with momentum')"),
        "optim.learning_rate": (0.01, f"{S001}: sequence model LR 0.01"),
        "optim.batch_size": (64, f"{S001}: mini-batch 64"),
        "optim.warmup_epochs": (0, OURS + " (no warm-up)"),
        "loss.expr_loss": ("focal", f"{S001}: focal loss for EXPR (Eq. 2)"),
        "loss.au_positive_weights": (True, f"{S001}: BCE with positive weights for AU imbalance (Eq. 1)"),
        "loss.schedule": ("epoch", f"{S001}: alternating task updates, epoch by epoch"),
        "labels.protocol": ("abaw2021", f"{S001}: ABAW 2021, 12 AUs; AU 0.5 F1 + 0.5 acc, EXPR 0.67 F1 + 0.33 acc"),
    }, tasks=(("expr", "au"), f"{S001}: expression and action units")),
    Recipe("tsav", S004, "tsav_tcn", TSAV_SETTINGS),
    Recipe("tsav_trunks", S004, "tsav", TSAV_SETTINGS | {
        "optim.batch_size": (4, f"{S004}: the mini-batch of 320 frames in 10 parts, here 4 windows of 8 frames"),
    }),
    Recipe("m3t", S000, "m3t_concat", M3T_SETTINGS),
    Recipe("m3t_visual", S000, "m3t_3dvgg", M3T_SETTINGS, tasks=(("va",), f"{S000}: the visual network's VA")),
)}


def recipe(name: str) -> Recipe:
    """The recipe ``name``; a :class:`~features_store.errors.UsageError` lists the known ones."""
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)} (python -m train recipes)")
    return RECIPES[name]
