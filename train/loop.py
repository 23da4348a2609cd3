"""The training loop of one fold: Adam/AdamW, warm-up, ReduceLROnPlateau on the validation objective, early stopping,
best state restored; seeded; CUDA with mixed precision when present.

Model selection maximises the validation ``objective`` of :mod:`train.scoring` (the ABAW sum of task scores), computed
each epoch on per-frame predictions with overlapping windows averaged, exactly as ``predict`` writes them.
"""

from __future__ import annotations

import copy
import logging
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
from train.predict import predict_frames
from train.scoring import score
from train.windows import Batch, WindowBatches, WindowConfig

LOG = logging.getLogger("affectsync.train")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation (defaults from ABAW3, seed 003 sec. 3.2, and M3T's weight decay).

    ``epochs``: at most this many passes; ``batch_size``: windows per step (ABAW3: 2); ``warmup_epochs``: the
    learning rate rises linearly, step by step, over this many epochs; ``plateau_patience`` / ``plateau_factor``:
    ReduceLROnPlateau on the validation objective (epochs without improvement / LR multiplier);
    ``early_stopping_patience``: epochs without improvement before stopping; ``gradient_clip``: max gradient norm;
    ``mixed_precision``: float16 autocast, used only on CUDA.
    """

    epochs: int = 50
    batch_size: int = 2
    optimizer: Literal["adam", "adamw"] = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    plateau_patience: int = 5
    plateau_factor: float = 0.1
    early_stopping_patience: int = 10
    gradient_clip: float = 5.0
    seed: int = 0
    mixed_precision: bool = True


@dataclass
class FoldData:
    """What one fold trains on: features, per-frame labels (T rows) and the label masks of each role."""

    features: StoreFeatures
    tasks: Mapping[str, TaskSpec]
    labels: Mapping[str, Mapping[str, np.ndarray]]
    train_masks: Mapping[str, Mapping[str, np.ndarray]]
    val_masks: Mapping[str, Mapping[str, np.ndarray]]
    train_ids: list[str]
    val_ids: list[str]
    au_pos_weight: np.ndarray | None = None


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainingBatches:
    """The batches of an epoch with the tasks each one updates.

    ``joint``: windows of every training video, all tasks. ``epoch`` / ``batch`` (seed 001's alternating updates):
    one task per epoch, or one per batch in turn, each drawn from the videos with training labels for that task.
    """

    def __init__(self, data: FoldData, window: WindowConfig, batch_size: int, schedule: TaskSchedule, seed: int):
        self.schedule = schedule
        def batches(video_ids: list[str]) -> WindowBatches:
            return WindowBatches(data.features, video_ids, window, batch_size, labels=data.labels,
                                 label_masks=data.train_masks, shuffle=True, seed=seed)
        if schedule.mode == "joint":
            self.sources = {None: batches(data.train_ids)}
        else:
            self.sources = {task: batches([v for v in data.train_ids if data.train_masks[v][task].any()])
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


class FoldTrainer:
    """The optimisation of one fold: optimiser, warm-up and plateau schedule, mixed precision, the multi-task loss
    over the fold's batches, and the scores model selection follows (the validation videos, or the training videos
    when the fold has none: :attr:`selected_on`)."""

    def __init__(self, model: torch.nn.Module, data: FoldData, window: WindowConfig, optim: OptimConfig,
                 loss_config: LossConfig, device: torch.device):
        self.model, self.data, self.window, self.optim, self.device = model, data, window, optim, device
        pos_weight = torch.as_tensor(data.au_pos_weight, device=device) if data.au_pos_weight is not None else None
        self.criterion = MultiTaskLoss(loss_config, dict(data.tasks), au_pos_weight=pos_weight)
        self.batches = TrainingBatches(data, window, optim.batch_size,
                                       TaskSchedule(loss_config.schedule, tuple(data.tasks)), optim.seed)
        optimiser_class = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
        self.optimiser = optimiser_class(model.parameters(), lr=optim.learning_rate, weight_decay=optim.weight_decay)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimiser, mode="max",
                                                                  factor=optim.plateau_factor,
                                                                  patience=optim.plateau_patience)
        self.warmup_steps = optim.warmup_epochs * len(self.batches)
        self.use_amp = optim.mixed_precision and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.selected_on = "val" if data.val_ids else "train"
        self.selection_ids, self.selection_masks = ((data.val_ids, data.val_masks) if data.val_ids
                                                    else (data.train_ids, data.train_masks))
        self.step = 0

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the fold's training batches; each loss term averaged over the batches it was part of."""
        self.model.train()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for batch, active in self.batches.epoch(epoch):
            parts = self._train_step(batch, active)
            for key, value in (parts or {}).items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
        return {key: sums[key] / counts[key] for key in sums}

    def _train_step(self, batch: Batch, active: tuple[str, ...] | None) -> dict[str, float] | None:
        """One optimiser step (after the warm-up's learning rate); None when no task had a labelled frame."""
        if self.step < self.warmup_steps:
            for group in self.optimiser.param_groups:
                group["lr"] = self.optim.learning_rate * (self.step + 1) / self.warmup_steps
        self.step += 1
        inputs, frame_mask, labels, masks = batch.to(self.device)
        with out_of_memory_names("--batch-size (or --window)", self.optim.batch_size):
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                outputs = self.model(inputs, frame_mask)
            loss, parts = self.criterion({t: o.float() for t, o in outputs.items()}, labels, masks, active=active)
            if len(parts) == 1:  # only "total": no task had a labelled frame in this batch, nothing to learn
                return None
            self.optimiser.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimiser)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim.gradient_clip)
        self.scaler.step(self.optimiser)
        self.scaler.update()
        parts["loss"] = parts.pop("total")
        return {key: float(value) for key, value in parts.items()}

    def selection_scores(self) -> dict[str, float]:
        """The scores model selection follows, from per-frame predictions as ``predict`` writes them."""
        predictions = predict_frames(self.model, self.data.features, self.selection_ids, self.window, self.device,
                                     self.optim.batch_size)
        return score(predictions, self.data.labels, self.selection_masks, self.data.tasks, self.selection_ids)

    def end_epoch(self, objective: float) -> None:
        """The plateau schedule, once the warm-up is over."""
        if self.step >= self.warmup_steps:
            self.plateau.step(objective)

    def final_result(self, result: TrainResult) -> TrainResult:
        """One pass over every video of the fold: the final scores and the predictions the run keeps."""
        data = self.data
        result.predictions = predict_frames(self.model, data.features, sorted(set(data.train_ids) | set(data.val_ids)),
                                            self.window, self.device, self.optim.batch_size)
        result.final = {
            "train": score(result.predictions, data.labels, data.train_masks, data.tasks, data.train_ids),
            "val": (score(result.predictions, data.labels, data.val_masks, data.tasks, data.val_ids)
                    if data.val_ids else {}),
        }
        return result


def fit(model: torch.nn.Module, data: FoldData, window: WindowConfig, optim: OptimConfig, loss_config: LossConfig,
        device: torch.device, progress: bool = True) -> TrainResult:
    """Train ``model`` on ``data`` and return it with its best state (by the selection objective) restored.

    Model selection, the plateau schedule and early stopping follow the validation objective of the fold's
    validation videos (the training videos when the fold has none; ``TrainResult.selected_on`` says which).
    """
    torch.set_flush_denormal(True)  # near-converged GRUs otherwise crawl on CPU through denormal arithmetic
    model.to(device)
    trainer = FoldTrainer(model, data, window, optim, loss_config, device)
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
        trainer.end_epoch(objective)
        result.epochs.append({"epoch": epoch + 1, "train_loss": train_loss, result.selected_on: selection,
                              "lr": trainer.optimiser.param_groups[0]["lr"], "seconds": time.perf_counter() - started})
        bar.set_postfix(loss=f"{train_loss.get('loss', float('nan')):.3f}", objective=f"{objective:.3f}")
        if objective > best_objective:
            best_objective, best_state, stale_epochs = objective, copy.deepcopy(model.state_dict()), 0
            result.best_epoch = epoch + 1
        else:
            stale_epochs += 1
            if stale_epochs >= optim.early_stopping_patience:
                LOG.info("early stopping after epoch %d (best %d)", epoch + 1, result.best_epoch)
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return trainer.final_result(result)
