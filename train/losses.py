"""Training losses for the three ABAW tasks over padded frame sequences, and the multi-task schedule.

Every loss takes per-frame model outputs and gold of shape (B, L, ...) (B sequences of L frames) and a (B, L) bool
``mask`` that is True on labelled frames a loss may use (padding and unlabelled frames False). Frames whose gold holds
the organisers' invalid code (VA -5, EXPR -1, an AU row with a -1; see :mod:`train.tasks`) are excluded even where the
mask says True, and whatever values masked frames hold (NaN included) never reach the loss or its gradient.

- VA: ``L_V = 1 - CCC_V``, ``L_A = 1 - CCC_A`` and ``L_VA = 0.5 (L_V + L_A)`` (seed 000, M3T, Sec. III-A Eqs. 1, 2, 4;
  seed 004, TSAV, Sec. III-D). The CCC is taken over each sequence's valid frames and averaged over sequences.
- EXPR: cross-entropy (seed 000, Eq. 3) or focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` (seed 001, Sec. 3.1 Eq. 2),
  averaged over valid frames (TSAV divides each loss by the number of labelled samples, Sec. III-D).
- AU: binary cross-entropy on logits with per-AU positive weights (seed 001, Sec. 3.1 Eq. 1), weights from
  :func:`au_pos_weight`.
- Total: ``L = 0.5 (L_V + L_A) + lambda_expr L_EXPR + lambda_au L_AU`` (seed 000, Eq. 4, lambda = 0.5) over the
  active tasks (:class:`MultiTaskLoss`); :class:`TaskSchedule` gives seed 001's alternating updates (Sec. 3.1,
  "epoch by epoch" / "batch by batch") for data that is labelled for one task at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from eval.tasks import TASK_ORDER, TaskSpec

VA_MIN = -1.0 - 1e-6
"""Smallest usable VA value (valid values lie in [-1, 1], the invalid code is -5), as in ``TaskSpec.valid``."""
CCC_EPS = 1e-8
"""Added to the CCC denominator so that constant sequences give CCC 0 (loss 1) instead of NaN."""

ExprLossKind = Literal["ce", "focal"]
ScheduleMode = Literal["joint", "epoch", "batch"]
SCHEDULE_MODES = ("joint", "epoch", "batch")


def _zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 connected to the inputs' autograd graph (via an empty slice, so NaNs cannot leak in), for batches
    where nothing contributes and ``backward()`` must still work."""
    floating = [t for t in tensors if t.is_floating_point()]
    if not floating:
        return torch.zeros(())
    return sum((t.reshape(-1)[:0].sum() for t in floating[1:]), floating[0].reshape(-1)[:0].sum())


def valid_frames(task: str, gold: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Bool mask of the entries a loss of ``task`` (``va``/``expr``/``au``) may use: ``mask`` minus invalid codes.

    ``gold`` is (B, L, 2) / (B, L) / (B, L, K) in the organisers' coding, ``mask`` (B, L) (or (B, L, 2) for VA).
    Returns (B, L, 2) for VA (valence and arousal separately, -5 invalid) and (B, L) for EXPR (-1 invalid) and AU
    (a row with any -1 invalid).
    """
    mask = mask.to(torch.bool)
    if task == "va":
        if mask.dim() == gold.dim() - 1:
            mask = mask[..., None]
        return mask & (gold >= VA_MIN)  # the same rule as TaskSpec.valid; -5 and NaN compare False
    if task == "expr":
        return mask & (gold >= 0)
    if task == "au":
        return mask & (gold >= 0).all(dim=-1)
    raise ValueError(f"unknown task {task!r}")


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with entries outside ``mask`` replaced by 0 (``where``, so NaN padding neither leaks nor poisons grads)."""
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


def ccc_loss(pred: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scalar ``1 - CCC`` of (B, L) predictions against (B, L) gold (same unit, e.g. valence in [-1, 1]).

    For each sequence the CCC ``2 cov / (var_p + var_g + (mean_p - mean_g)^2 + eps)`` is computed with population
    (1/n) moments over its n valid frames ((B, L) bool ``mask``); the loss averages ``1 - CCC`` over sequences with
    n >= 2. Range [0, 2]; a constant sequence scores CCC 0. With no such sequence it is a 0 that still backpropagates.
    """
    mask = mask.to(torch.bool)
    weight = mask.to(pred.dtype)
    n = weight.sum(dim=1)
    usable = n >= 2
    if not bool(usable.any()):
        return _zero_like_graph(pred)
    n_safe = n.clamp(min=1.0)
    p = _masked(pred, mask)
    g = _masked(gold.to(pred.dtype), mask)
    mean_p = p.sum(dim=1) / n_safe
    mean_g = g.sum(dim=1) / n_safe
    p_centred = (p - mean_p[:, None]) * weight
    g_centred = (g - mean_g[:, None]) * weight
    var_p = (p_centred**2).sum(dim=1) / n_safe
    var_g = (g_centred**2).sum(dim=1) / n_safe
    covariance = (p_centred * g_centred).sum(dim=1) / n_safe
    concordance = 2.0 * covariance / (var_p + var_g + (mean_p - mean_g) ** 2 + CCC_EPS)
    return (1.0 - concordance)[usable].mean()


def mse_loss(pred: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scalar mean squared error of (B, L) predictions against (B, L) gold over the (B, L) bool ``mask``'s frames
    (seed 002: MSE with tanh outputs); 0, still backpropagating, when no frame is valid."""
    count = mask.sum()
    if not bool(count):
        return _zero_like_graph(pred)
    return _masked((pred - gold) ** 2, mask).sum() / count


VA_LOSSES = {"ccc": ccc_loss, "mse": mse_loss}


def va_loss(
    pred: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor, kind: str = "ccc"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(0.5 (L_V + L_A), {"valence": L_V, "arousal": L_A})`` for (B, L, 2) predictions and gold in [-1, 1].

    ``mask`` is (B, L), or (B, L, 2) to mask valence and arousal separately (e.g. TSAV's valence-only pseudo-labels,
    :func:`train.pseudo_labels.pseudo_va`). A dimension whose gold is the invalid code -5 is masked out. Each part is
    :func:`ccc_loss` (``kind="ccc"``) or :func:`mse_loss` (``"mse"``, seed 002); all three are scalar tensors
    carrying gradients.
    """
    mask = valid_frames("va", gold, mask)
    loss = VA_LOSSES[kind]
    parts = {name: loss(pred[..., i], gold[..., i], mask[..., i]) for i, name in enumerate(("valence", "arousal"))}
    return 0.5 * (parts["valence"] + parts["arousal"]), parts


def expr_loss(
    logits: torch.Tensor,
    gold: torch.Tensor,
    mask: torch.Tensor,
    kind: ExprLossKind = "ce",
    gamma: float = 2.0,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    logit_offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar expression loss of (B, L, C) logits against (B, L) class indices, mean over valid frames (nats).

    ``kind="ce"``: cross-entropy ``-w_t log p_t``. ``kind="focal"``: focal loss ``-w_t (1 - p_t)^gamma log p_t`` (seed
    001, Eq. 2, ``alpha_t`` = ``w_t``); ``gamma=0`` is cross-entropy. ``class_weights`` (C,) gives ``w_t`` (1 without);
    the sum is divided by the number of valid frames, not by the sum of their weights as torch's weighted
    ``cross_entropy`` does. ``logit_offsets`` (C,) are added to the logits inside the loss only (logit adjustment,
    :func:`train.tricks.expr_logit_offsets`). Frames with gold -1 are never used. 0 with gradient when no frame is
    valid.
    """
    if kind not in ("ce", "focal"):
        raise ValueError(f"unknown expression loss {kind!r}; expected 'ce' or 'focal'")
    valid = valid_frames("expr", gold, mask)
    if not bool(valid.any()):
        return _zero_like_graph(logits)
    logits_v = logits[valid]  # (n, C)
    if logit_offsets is not None:
        logits_v = logits_v + logit_offsets.to(logits_v.device, logits_v.dtype)
    target = gold[valid].long()
    log_p_t = torch.log_softmax(logits_v, dim=-1).gather(1, target[:, None]).squeeze(1)
    loss = -log_p_t
    if kind == "focal" and gamma != 0:
        loss = loss * (1.0 - log_p_t.exp()).clamp(min=0.0) ** gamma
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        loss = loss * weights[target]
    return loss.mean()


def au_loss(
    logits: torch.Tensor,
    gold: torch.Tensor,
    mask: torch.Tensor,
    pos_weight: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Scalar BCE-with-logits of (B, L, K) AU logits against (B, L, K) 0/1 gold, mean over valid frames and AUs.

    ``pos_weight`` (K,) multiplies the positive term of each AU (seed 001, Eq. 1; see :func:`au_pos_weight`). Seed 001
    sums over AUs where this averages, a constant factor K that ``lambda_au`` absorbs. Rows with a -1 are never used.
    0 with gradient when no row is valid.
    """
    valid = valid_frames("au", gold, mask)
    if not bool(valid.any()):
        return _zero_like_graph(logits)
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(
        logits[valid], gold[valid].to(logits.dtype), pos_weight=pos_weight, reduction="mean"
    )


def au_pos_weight(au_labels: np.ndarray) -> np.ndarray:
    """(K,) float32 positive weights ``negatives / positives`` per AU from (N, K) training labels in the organisers'
    coding (0/1, a row with any -1 is invalid and skipped).

    Seed 001 (Sec. 3.1) weights positive examples in the BCE to counter AU imbalance without giving the value; this
    uses the usual ratio of negatives to positives (the ``pos_weight`` recipe of ``torch.nn.BCEWithLogitsLoss``), which
    makes positives and negatives of each AU weigh the same in total. Both counts are clamped to at least 1, so an AU
    with no positive gets ``negatives`` (as if it had one) and an AU with no negative gets ``1 / positives``; with no
    valid row at all every weight is 1.
    """
    labels = np.asarray(au_labels, dtype=np.float64)
    if labels.ndim != 2:
        raise ValueError(f"au_pos_weight expects (N, K) labels, got shape {labels.shape}")
    rows = labels[np.all(labels >= 0, axis=1)]
    if rows.shape[0] == 0:
        return np.ones(labels.shape[1], dtype=np.float32)
    positives = (rows > 0.5).sum(axis=0)
    negatives = rows.shape[0] - positives
    return (np.maximum(negatives, 1) / np.maximum(positives, 1)).astype(np.float32)


@dataclass(frozen=True)
class LossConfig:
    """How :class:`MultiTaskLoss` combines the tasks.

    ``va_loss``: ``"ccc"`` (1 - CCC, seeds 000, 003, 004) or ``"mse"`` (seed 002).
    ``expr_loss``: ``"ce"`` (seed 000) or ``"focal"`` (seed 001) with exponent ``focal_gamma`` (Lin et al.'s default 2).
    ``lambda_expr``: weight of L_EXPR, 0.5 as in M3T (seed 000, Eq. 4). ``lambda_au``: weight of L_AU.
    ``expr_class_weights``: optional per-class ``alpha_t`` of the expression loss. ``au_positive_weights``: weigh
    each AU's positives by its training ratio of negatives to positives (seed 001; :func:`au_pos_weight`), else plain
    BCE. ``schedule``: which tasks a step updates, see :class:`TaskSchedule`.
    """

    va_loss: Literal["ccc", "mse"] = "ccc"
    expr_loss: ExprLossKind = "ce"
    focal_gamma: float = 2.0
    lambda_expr: float = 0.5
    lambda_au: float = 1.0
    expr_class_weights: tuple[float, ...] | None = None
    au_positive_weights: bool = True
    schedule: ScheduleMode = "joint"

    def __post_init__(self) -> None:
        if self.va_loss not in VA_LOSSES:
            raise ValueError(f"va_loss must be one of {tuple(VA_LOSSES)}, got {self.va_loss!r}")
        if self.expr_loss not in ("ce", "focal"):
            raise ValueError(f"expr_loss must be 'ce' or 'focal', got {self.expr_loss!r}")
        if self.schedule not in SCHEDULE_MODES:
            raise ValueError(f"schedule must be one of {SCHEDULE_MODES}, got {self.schedule!r}")


class MultiTaskLoss:
    """``L = 0.5 (L_V + L_A) + lambda_expr L_EXPR + lambda_au L_AU`` over the tasks a step trains.

    ``tasks`` maps an output key to its :class:`~train.tasks.TaskSpec` (the spec's ``name`` picks the loss);
    ``au_pos_weight`` is the (K,) array of :func:`au_pos_weight` or None for unweighted BCE; ``expr_logit_offsets``
    the (C,) offsets of logit adjustment (:func:`train.tricks.expr_logit_offsets`) or None.
    """

    def __init__(
        self,
        config: LossConfig,
        tasks: Mapping[str, TaskSpec],
        au_pos_weight: np.ndarray | torch.Tensor | None = None,
        expr_logit_offsets: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        self.config = config
        self.tasks = dict(tasks)
        self.au_pos_weight = None if au_pos_weight is None else torch.as_tensor(au_pos_weight, dtype=torch.float32)
        self.expr_logit_offsets = (None if expr_logit_offsets is None
                                   else torch.as_tensor(expr_logit_offsets, dtype=torch.float32))
        self.expr_class_weights = (
            None if config.expr_class_weights is None
            else torch.as_tensor(config.expr_class_weights, dtype=torch.float32)
        )

    def _task_loss(
        self, spec: TaskSpec, output: torch.Tensor, label: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted loss, unweighted parts) of one task that has valid frames."""
        if spec.name == "va":
            loss, parts = va_loss(output, label, mask, self.config.va_loss)
            return loss, {**parts, "va": loss}
        if spec.name == "expr":
            loss = expr_loss(output, label, mask, kind=self.config.expr_loss, gamma=self.config.focal_gamma,
                             class_weights=self.expr_class_weights, logit_offsets=self.expr_logit_offsets)
            return self.config.lambda_expr * loss, {"expr": loss}
        loss = au_loss(output, label, mask, pos_weight=self.au_pos_weight)
        return self.config.lambda_au * loss, {"au": loss}

    def __call__(
        self,
        outputs: Mapping[str, torch.Tensor],
        labels: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        active: Collection[str] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (scalar tensor) and its parts as floats.

        ``outputs``/``labels``/``masks`` map task keys to (B, L, ...) outputs, (B, L, ...) gold in the organisers'
        coding and (B, L) bool masks (a missing mask means every frame whose gold is valid). A task contributes when
        it is in ``active`` (all configured tasks when None), present in ``outputs`` and ``labels``, and has a valid
        frame in the batch. ``parts`` holds the unweighted loss of each contributing task (``va``, ``valence``,
        ``arousal``, ``expr``, ``au``) and ``total``. When no task contributes the total is 0 and still backpropagates.
        """
        total: torch.Tensor | None = None
        parts: dict[str, float] = {}
        for key, spec in self.tasks.items():
            if (active is not None and key not in active) or key not in outputs or key not in labels:
                continue
            output, label = outputs[key], labels[key]
            mask = masks.get(key)
            if mask is None:
                mask = torch.ones(label.shape[:2], dtype=torch.bool, device=label.device)
            if not bool(valid_frames(spec.name, label, mask).any()):
                continue
            weighted, task_parts = self._task_loss(spec, output, label, mask)
            total = weighted if total is None else total + weighted
            parts.update({name: float(value.detach()) for name, value in task_parts.items()})
        if total is None:
            total = _zero_like_graph(*outputs.values())
        parts["total"] = float(total.detach())
        return total, parts


class TaskSchedule:
    """Which tasks a training step updates, for data where a frame is labelled for some tasks only (seed 001, 3.1).

    ``mode="joint"``: every task every step. ``"epoch"``: one task per epoch, cycling through ``tasks`` in order
    (seed 001's "epoch by epoch": epoch 0 the first task, epoch 1 the second, ...). ``"batch"``: one task per batch,
    cycling with the batch index ("batch by batch"). Under the alternating modes the data loader should draw the
    step's batch from frames labelled for the active task. ``batch_index`` restarts each epoch; pass a global step
    instead to keep cycling across epoch boundaries.
    """

    def __init__(self, mode: ScheduleMode, tasks: Sequence[str] = TASK_ORDER) -> None:
        if mode not in SCHEDULE_MODES:
            raise ValueError(f"schedule mode must be one of {SCHEDULE_MODES}, got {mode!r}")
        if not tasks:
            raise ValueError("TaskSchedule needs at least one task")
        self.mode = mode
        self.tasks = tuple(tasks)

    def active_tasks(self, epoch: int, batch_index: int) -> tuple[str, ...]:
        """The task keys that step ``batch_index`` (0-based) of epoch ``epoch`` (0-based) trains."""
        if self.mode == "joint":
            return self.tasks
        step = epoch if self.mode == "epoch" else batch_index
        return (self.tasks[step % len(self.tasks)],)
