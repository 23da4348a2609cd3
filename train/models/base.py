"""What every model shares: the input contract, a per-modality projection, masked batch norm, packed RNNs, padded convs.

Input contract (all models): ``forward(inputs, frame_mask=None)`` with ``inputs`` a dict modality name -> (B, L, D_m)
float tensor for every modality the model was built with (extra keys are ignored) and ``frame_mask`` (B, L) bool, True
on real frames and False on the zero padding at the end of short windows. Every output is frame-synchronous: length L.

:meth:`SequenceModel.gather_inputs` checks the shapes and zeroes the padded frames, so no model can depend on what a
caller left there; recurrent models additionally run packed (bidirectional GRUs never read padding into real frames),
temporal convolutions are causal or, for a single centred layer, see zeros exactly as a shorter sequence would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from eval.tasks import TaskSpec

from .heads import check_tasks


def check_modality_dims(modality_dims: Mapping[str, int]) -> dict[str, int]:
    """``modality_dims`` as a plain ordered dict after checking names and sizes."""
    dims = dict(modality_dims)
    if not dims:
        raise ValueError("a model needs at least one input modality")
    for name, dim in dims.items():
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"modality names must be non-empty strings without '.', got {name!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"modality {name!r}: feature size must be a positive int, got {dim!r}")
    return dims


class SequenceModel(nn.Module):
    """Base class: stores ``modality_dims``, ``modalities`` (their order), ``tasks``, ``task_names`` and ``config``.

    ``spec`` (the registry's :class:`train.models.ModelSpec`) is set on the instance by ``build_model``.
    """

    spec: Any = None

    def __init__(self, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec], config: Any):
        super().__init__()
        self.modality_dims = check_modality_dims(modality_dims)
        self.modalities = tuple(self.modality_dims)
        self.tasks = check_tasks(tasks)
        self.task_names = tuple(task.name for task in self.tasks)
        self.config = config

    def gather_inputs(self, inputs: Mapping[str, torch.Tensor],
                      frame_mask: torch.Tensor | None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The model's modalities in its order, checked, padded frames zeroed; and the mask (None if all real)."""
        missing = [name for name in self.modalities if name not in inputs]
        if missing:
            raise ValueError(f"inputs lack modality {missing}; the model was built for {list(self.modalities)}")
        xs = [inputs[name] for name in self.modalities]
        batch, length = xs[0].shape[0], xs[0].shape[1] if xs[0].dim() == 3 else -1
        for name, x in zip(self.modalities, xs):
            if x.dim() != 3 or x.shape[0] != batch or x.shape[1] != length or x.shape[2] != self.modality_dims[name]:
                raise ValueError(f"input {name!r} has shape {tuple(x.shape)}; expected ({batch}, {length}, "
                                 f"{self.modality_dims[name]}) like the first modality")
        if frame_mask is None:
            return xs, None
        if frame_mask.shape != (batch, length):
            raise ValueError(f"frame_mask has shape {tuple(frame_mask.shape)}; expected ({batch}, {length})")
        mask = frame_mask.to(device=xs[0].device, dtype=torch.bool)
        if bool(mask.all()):
            return xs, None
        weight = mask.unsqueeze(-1).to(xs[0].dtype)
        return [x * weight for x in xs], mask


def lengths_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B,) int64 on CPU: real frames per row (padding is at the end); at least 1 so packing never sees an empty row."""
    return mask.sum(dim=1).clamp(min=1).to("cpu", torch.int64)


def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Run a batch_first RNN; with a mask, packed to each row's length so the backward direction starts on the last
    real frame. Outputs at padded frames are zero. Returns (B, L, H * directions)."""
    if mask is None:
        return rnn(x)[0]
    packed = pack_padded_sequence(x, lengths_from_mask(mask), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class ModalityProjection(nn.Module):
    """Per-modality ``Linear(D_m -> out_dim)`` (+ ReLU, + dropout): brings every modality to one width before fusion."""

    def __init__(self, modality_dims: Mapping[str, int], out_dim: int, dropout: float = 0.0, activation: bool = True):
        super().__init__()
        self.modalities = tuple(modality_dims)
        self.proj = nn.ModuleDict({name: nn.Linear(dim, out_dim) for name, dim in modality_dims.items()})
        self.activation = nn.ReLU() if activation else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.dropout(self.activation(self.proj[name](x))) for name, x in zip(self.modalities, xs)]


class SequenceBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over (B, L, C) features whose batch statistics come from the real frames only (padding excluded)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None or not self.training:
            return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        valid = x[mask]
        if valid.shape[0] < 2:  # too few frames for batch statistics: use the running ones
            normed = F.batch_norm(valid, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                  self.eps)
        else:
            normed = super().forward(valid)
        out = torch.zeros_like(x)
        out[mask] = normed
        return out


class ChannelPReLU(nn.Module):
    """PReLU with one slope per feature on the last axis (nn.PReLU puts channels on axis 1, i.e. time here)."""

    def __init__(self, num_features: int, init: float = 0.25):
        super().__init__()
        self.weight = nn.Parameter(torch.full((num_features,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, self.weight * x)


def pad_time(x: torch.Tensor, kernel_size: int, dilation: int, causal: bool) -> torch.Tensor:
    """Zero-pad (B, C, L) on the time axis so a stride-1 conv keeps length L: all on the left when causal (output t
    sees t and earlier), split evenly when centred (an even receptive field leans one frame to the past)."""
    total = (kernel_size - 1) * dilation
    left = total if causal else total - total // 2
    return F.pad(x, (left, total - left))


def check_config(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
