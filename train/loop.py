"""The training loop of one fold: Adam/AdamW/SGD/RMSprop, warm-up, ReduceLROnPlateau on the validation objective or a
cyclical (triangular) learning rate, gradient accumulation, early stopping and a minimum learning rate, best state
restored (after every epoch too, as ABAW3 does, when asked); seeded; CUDA with mixed precision when present; the
tricks of :mod:`train.tricks` (modality dropout and logit adjustment while training; smoothing and AU thresholds
chosen on the selection videos at the end).

Model selection maximises the validation ``objective`` of :mod:`train.scoring` (the ABAW sum of task scores), computed
each epoch on per-frame predictions with overlapping windows averaged, exactly as ``predict`` writes them.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from eval.tasks import TaskSpec
from features_store.common import out_of_memory_names
from train.features import StoreFeatures
from train.losses import LossConfig, MultiTaskLoss, TaskSchedule
from train.post_processing import PostProcessing
from train.predict import predict_frames
from train.scoring import score
from train.stages import keep_frozen_in_eval
from train.tricks import TricksConfig, choose_post_processing, drop_modalities
from train.windows import Batch, WindowBatches, WindowConfig

LOG = logging.getLogger("affectsync.train")
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop}


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation (defaults from ABAW3, seed 003 sec. 3.2, and M3T's weight decay).

    ``epochs``: at most this many passes; ``batch_size``: windows per forward pass (ABAW3: 2);
    ``accumulate_batches``: gradients of this many batches per optimiser step (effective batch = ``batch_size *
    accumulate_batches``; TSAV: 32 x 10); ``optimizer`` with ``momentum`` (SGD, RMSprop); ``warmup_epochs``: the
    learning rate rises linearly, step by step, over this many epochs; ``lr_schedule``: ``plateau``
    (ReduceLROnPlateau on the validation objective: ``plateau_patience`` epochs without improvement multiply the LR
    by ``plateau_factor``) or ``cyclical`` (triangular, Smith 2017: from ``cyclical_base_lr`` up to ``learning_rate``
    over ``cyclical_step_up_epochs`` epochs of steps and back); ``min_learning_rate``: training stops once the
    plateau schedule takes the LR below it (0: never); ``early_stopping_patience``: epochs without improvement before
    stopping; ``reload_best_each_epoch``: load the best state so far at the end of every epoch without improvement
    (ABAW3); ``gradient_clip``: max gradient norm; ``mixed_precision``: float16 autocast, used only on CUDA;
    ``data_workers``: processes assembling training batches (0: one batch ahead on a thread; the trunk models' clips
    on a GPU want several).
    """

    epochs: int = 50
    batch_size: int = 2
    accumulate_batches: int = 1
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    lr_schedule: Literal["plateau", "cyclical"] = "plateau"
    plateau_patience: int = 5
    plateau_factor: float = 0.1
    cyclical_base_lr: float = 1e-7
    cyclical_step_up_epochs: float = 3.0
    min_learning_rate: float = 0.0
    early_stopping_patience: int = 10
    reload_best_each_epoch: bool = False
    gradient_clip: float = 5.0
    seed: int = 0
    mixed_precision: bool = True
    data_workers: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_schedule not in ("plateau", "cyclical"):
            raise ValueError(f"lr_schedule must be 'plateau' or 'cyclical', got {self.lr_schedule!r}")
        if self.accumulate_batches < 1 or self.batch_size < 1:
            raise ValueError("batch_size and accumulate_batches must be at least 1")

    def build_optimizer(self, parameters) -> torch.optim.Optimizer:
        """The optimiser over ``parameters`` at the starting learning rate."""
        kwargs = {"lr": self.learning_rate, "weight_decay": self.weight_decay}
        if self.optimizer in ("sgd", "rmsprop"):
            kwargs["momentum"] = self.momentum
        return OPTIMIZERS[self.optimizer](parameters, **kwargs)


@dataclass
class FoldData:
    """What one fold trains on: features, per-frame labels (T rows) and the label masks of each role (what scores
    use), and what the fold learns from when label rules change it (``training_labels`` / ``training_masks``: TSAV's
    filtering and pseudo-labels, whose ``pseudo`` draw changes every epoch); the loss's class statistics of the
    training frames (``au_pos_weight``, ``expr_logit_offsets``)."""

    features: StoreFeatures
    tasks: Mapping[str, TaskSpec]
    labels: Mapping[str, Mapping[str, np.ndarray]]
    train_masks: Mapping[str, Mapping[str, np.ndarray]]
    val_masks: Mapping[str, Mapping[str, np.ndarray]]
    train_ids: list[str]
    val_ids: list[str]
    au_pos_weight: np.ndarray | None = None
    training_labels: Mapping[str, Mapping[str, np.ndarray]] | None = None
    training_masks: Mapping[str, Mapping[str, np.ndarray]] | None = None
    pseudo: Any = None
    expr_logit_offsets: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.training_labels = self.labels if self.training_labels is None else self.training_labels
        self.training_masks = self.train_masks if self.training_masks is None else self.training_masks


@dataclass
class TrainResult:
    """The restored best model, the epoch history and the final train/val scores."""

    model: torch.nn.Module
    selected_on: str = "val"
    epochs: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    best_epoch: int = 0
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """video id -> task -> per-frame outputs of the restored model for every video of the fold"""
    post_processing: PostProcessing = field(default_factory=PostProcessing)
    """The smoothing and AU thresholds chosen on the selection videos (none unless the tricks ask)."""
    selection_before_post_processing: dict[str, float] = field(default_factory=dict)
    """The selection videos' scores of the raw outputs (``final[selected_on]`` has them post-processed)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainingBatches:
    """The batches of an epoch with the tasks each one updates.

    ``joint``: windows of every training video, all tasks. ``epoch`` / ``batch`` (seed 001's alternating updates):
    one task per epoch, or one per batch in turn, each drawn from the videos with training labels for that task.
    """

    def __init__(self, data: FoldData, window: WindowConfig, batch_size: int, schedule: TaskSchedule, seed: int,
                 workers: int = 0):
        self.schedule = schedule
        def batches(video_ids: list[str]) -> WindowBatches:
            return WindowBatches(data.features, video_ids, window, batch_size, labels=data.training_labels,
                                 label_masks=data.training_masks, shuffle=True, seed=seed, workers=workers)
        if schedule.mode == "joint":
            self.sources = {None: batches(data.train_ids)}
        else:
            self.sources = {task: batches([v for v in data.train_ids if data.training_masks[v][task].any()])
                            for task in schedule.tasks}

    def __len__(self) -> int:
        """Batches per epoch (alternating per epoch: the mean over tasks)."""
        total = sum(len(source) for source in self.sources.values())
        return -(-total // len(self.sources)) if self.schedule.mode == "epoch" else total

    def epoch(self, epoch: int) -> Iterator[tuple[Batch, tuple[str, ...] | None]]:
        if self.schedule.mode == "joint":
            yield from ((batch, None) for batch in self.sources[None].batches(epoch))
        elif self.schedule.mode == "epoch":
            (task,) = self.schedule.active_tasks(epoch, 0)
            yield from ((batch, (task,)) for batch in self.sources[task].batches(epoch))
        else:
            streams = {task: source.batches(epoch) for task, source in self.sources.items()}
            while streams:
                for task in list(streams):
                    batch = next(streams[task], None)
                    if batch is None:
                        del streams[task]
                    else:
                        yield batch, (task,)


def learning_rate_schedule(optimiser: torch.optim.Optimizer, optim: OptimConfig, steps_per_epoch: int):
    """(ReduceLROnPlateau, None) for the ``plateau`` schedule, stepped with the validation objective each epoch; or
    (None, CyclicLR) for ``cyclical``: triangular (Smith 2017) from ``cyclical_base_lr`` up to ``learning_rate`` over
    ``cyclical_step_up_epochs`` epochs of optimiser steps and down again, stepped after every optimiser step (its
    rise is the warm-up)."""
    if optim.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="max", factor=optim.plateau_factor,
                                                          patience=optim.plateau_patience), None
    return None, torch.optim.lr_scheduler.CyclicLR(
        optimiser, base_lr=optim.cyclical_base_lr, max_lr=optim.learning_rate,
        step_size_up=max(1, round(optim.cyclical_step_up_epochs * steps_per_epoch)), mode="triangular",
        cycle_momentum=False)


class FoldTrainer:
    """The optimisation of one fold: optimiser, warm-up and learning-rate schedule, gradient accumulation, mixed
    precision, the multi-task loss over the fold's batches, and the scores model selection follows (the validation
    videos, or the training videos when the fold has none: :attr:`selected_on`)."""

    def __init__(self, model: torch.nn.Module, data: FoldData, window: WindowConfig, optim: OptimConfig,
                 loss_config: LossConfig, device: torch.device, tricks: TricksConfig = TricksConfig()):
        self.model, self.data, self.window, self.optim, self.device = model, data, window, optim, device
        self.tricks = tricks
        pos_weight = torch.as_tensor(data.au_pos_weight, device=device) if data.au_pos_weight is not None else None
        self.criterion = MultiTaskLoss(loss_config, dict(data.tasks), au_pos_weight=pos_weight,
                                       expr_logit_offsets=data.expr_logit_offsets)
        self.dropout_generator = torch.Generator().manual_seed(optim.seed)
        self.batches = TrainingBatches(data, window, optim.batch_size,
                                       TaskSchedule(loss_config.schedule, tuple(data.tasks)), optim.seed,
                                       optim.data_workers)
        self.optimiser = optim.build_optimizer([p for p in model.parameters() if p.requires_grad])
        steps_per_epoch = math.ceil(len(self.batches) / optim.accumulate_batches)
        self.plateau, self.cyclical = learning_rate_schedule(self.optimiser, optim, steps_per_epoch)
        self.warmup_steps = optim.warmup_epochs * steps_per_epoch if self.plateau is not None else 0
        self.use_amp = optim.mixed_precision and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.selected_on = "val" if data.val_ids else "train"
        self.selection_ids, self.selection_masks = ((data.val_ids, data.val_masks) if data.val_ids
                                                    else (data.train_ids, data.train_masks))
        self.step = 0
        """Optimiser steps taken (one per ``accumulate_batches`` batches)."""
        self._batches_in_step = 0
        self._gradients_pending = False

    @property
    def learning_rate(self) -> float:
        return self.optimiser.param_groups[0]["lr"]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the fold's training batches (this epoch's pseudo-labels drawn first); each loss term averaged
        over the batches it was part of."""
        if self.data.pseudo is not None:
            self.data.pseudo.draw(epoch)
        self.model.train()
        keep_frozen_in_eval(self.model)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for batch, active in self.batches.epoch(epoch):
            parts = self._train_batch(batch, active)
            for key, value in (parts or {}).items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
        if self._batches_in_step:
            self._optimiser_step()  # the epoch's last, shorter accumulation
        return {key: sums[key] / counts[key] for key in sums}

    def _train_batch(self, batch: Batch, active: tuple[str, ...] | None) -> dict[str, float] | None:
        """Forward and backward of one batch (its gradient scaled by 1 / ``accumulate_batches``); the optimiser steps
        after every ``accumulate_batches`` of them. None when no task had a labelled frame (nothing to learn)."""
        if self._batches_in_step == 0 and self.step < self.warmup_steps:
            for group in self.optimiser.param_groups:
                group["lr"] = self.optim.learning_rate * (self.step + 1) / self.warmup_steps
        inputs, frame_mask, labels, masks = batch.to(self.device)
        inputs = drop_modalities(inputs, self.tricks.modality_dropout, self.dropout_generator)
        with out_of_memory_names("--batch-size (or --window)", self.optim.batch_size):
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                outputs = self.model(inputs, frame_mask)
            loss, parts = self.criterion({t: o.float() for t, o in outputs.items()}, labels, masks, active=active)
            learned = len(parts) > 1  # only "total": no task had a labelled frame in this batch
            if learned:
                self.scaler.scale(loss / self.optim.accumulate_batches).backward()
                self._gradients_pending = True
        self._batches_in_step += 1
        if self._batches_in_step == self.optim.accumulate_batches:
            self._optimiser_step()
        if not learned:
            return None
        parts["loss"] = parts.pop("total")
        return {key: float(value) for key, value in parts.items()}

    def _optimiser_step(self) -> None:
        """Clip and apply the accumulated gradients (if any batch had some), then advance the schedule."""
        if self._gradients_pending:
            self.scaler.unscale_(self.optimiser)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim.gradient_clip)
            self.scaler.step(self.optimiser)
            self.scaler.update()
            self.optimiser.zero_grad(set_to_none=True)
            if self.cyclical is not None:
                self.cyclical.step()
        self._batches_in_step, self._gradients_pending = 0, False
        self.step += 1

    def selection_scores(self) -> dict[str, float]:
        """The scores model selection follows, from per-frame predictions as ``predict`` writes them."""
        predictions = predict_frames(self.model, self.data.features, self.selection_ids, self.window, self.device,
                                     self.optim.batch_size)
        return score(predictions, self.data.labels, self.selection_masks, self.data.tasks, self.selection_ids)

    def end_epoch(self, objective: float) -> bool:
        """The plateau schedule, once the warm-up is over; True when it took the learning rate below
        ``min_learning_rate`` (training stops)."""
        if self.plateau is not None and self.step >= self.warmup_steps:
            self.plateau.step(objective)
        return self.plateau is not None and self.learning_rate < self.optim.min_learning_rate

    def final_result(self, result: TrainResult) -> TrainResult:
        """One pass over every video of the fold: the predictions the run keeps, the post-processing the tricks
        choose on the selection videos, and the final scores of the post-processed decisions."""
        data = self.data
        result.predictions = predict_frames(self.model, data.features, sorted(set(data.train_ids) | set(data.val_ids)),
                                            self.window, self.device, self.optim.batch_size)
        if self.tricks.chooses_post_processing:
            result.post_processing = choose_post_processing(self.tricks, result.predictions, data.labels,
                                                            self.selection_masks, data.tasks, self.selection_ids)
            result.selection_before_post_processing = score(result.predictions, data.labels, self.selection_masks,
                                                            data.tasks, self.selection_ids)
            LOG.info("post-processing chosen on the %s videos: %s", self.selected_on, result.post_processing)
        post = result.post_processing
        result.final = {
            "train": score(result.predictions, data.labels, data.train_masks, data.tasks, data.train_ids, post),
            "val": (score(result.predictions, data.labels, data.val_masks, data.tasks, data.val_ids, post)
                    if data.val_ids else {}),
        }
        return result


def fit(model: torch.nn.Module, data: FoldData, window: WindowConfig, optim: OptimConfig, loss_config: LossConfig,
        device: torch.device, progress: bool = True, tricks: TricksConfig = TricksConfig()) -> TrainResult:
    """Train ``model`` on ``data`` and return it with its best state (by the selection objective) restored.

    Model selection, the plateau schedule and early stopping follow the validation objective of the fold's
    validation videos (the training videos when the fold has none; ``TrainResult.selected_on`` says which).
    """
    torch.set_flush_denormal(True)  # near-converged GRUs otherwise crawl on CPU through denormal arithmetic
    model.to(device)
    trainer = FoldTrainer(model, data, window, optim, loss_config, device, tricks)
    result = TrainResult(model, selected_on=trainer.selected_on)
    if not data.val_ids:
        LOG.warning("no validation videos in this fold: model selection uses the training videos")
    best_objective, best_state, stale_epochs = -np.inf, None, 0
    bar = tqdm(range(optim.epochs), desc="epochs", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        started = time.perf_counter()
        train_loss = trainer.train_epoch(epoch)
        selection = trainer.selection_scores()
        objective = selection.get("objective", -train_loss.get("loss", 0.0))  # nothing scored: the lower the loss
        below_minimum = trainer.end_epoch(objective)
        result.epochs.append({"epoch": epoch + 1, "train_loss": train_loss, result.selected_on: selection,
                              "lr": trainer.learning_rate, "seconds": time.perf_counter() - started})
        bar.set_postfix(loss=f"{train_loss.get('loss', float('nan')):.3f}", objective=f"{objective:.3f}")
        if objective > best_objective:
            best_objective, best_state, stale_epochs = objective, copy.deepcopy(model.state_dict()), 0
            result.best_epoch = epoch + 1
        else:
            stale_epochs += 1
            if optim.reload_best_each_epoch and best_state is not None:
                model.load_state_dict(best_state)  # ABAW3: the next epoch starts again from the best state
            if stale_epochs >= optim.early_stopping_patience:
                LOG.info("early stopping after epoch %d (best %d)", epoch + 1, result.best_epoch)
                break
        if below_minimum:
            LOG.info("learning rate %.3g below the minimum %.3g after epoch %d: training ends", trainer.learning_rate,
                     optim.min_learning_rate, epoch + 1)
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return trainer.final_result(result)
