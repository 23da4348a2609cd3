"""Seed 001: a transformer encoder over the concatenated (fused) modality features."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from eval.tasks import TaskSpec

from .base import SequenceModel, check_config
from .heads import TaskHeads


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) sine/cosine position encoding of Vaswani et al."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return pe.to(dtype)


def transformer_encoder(d_model: int, num_heads: int, dim_feedforward: int, dropout: float,
                        num_layers: int) -> nn.TransformerEncoder:
    """``num_layers`` post-norm encoder layers (batch first), as seed 001's fusion transformer and the trunks use."""
    layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)


def encode_sequence(encoder: nn.TransformerEncoder, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Transformer encoder over (B, L, D) with the padding as key padding mask (a row without real frames keeps
    one key; its outputs are padding anyway)."""
    padding = None
    if mask is not None:
        padding = ~mask
        padding[:, 0] = False
    return encoder(h, src_key_padding_mask=padding)


@dataclass(frozen=True)
class TransformerSeed001Config:
    """Hyperparameters of :class:`TransformerSeed001`. Seed 001 (Sec. 4.2) fixes one encoder layer over 30-frame
    inputs of 512-d visual (IResNet100) and 512-d audio (TDNN) features; heads, feed-forward width and dropout are
    not given, so those of the original transformer (8, 2048, 0.1) are used, at d_model 512."""

    d_model: int = 512
    num_layers: int = 1              # "the number of encoder layers from the transformer is set to 1"
    num_heads: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    positional_encoding: bool = True

    def __post_init__(self):
        for field in ("d_model", "num_layers", "num_heads", "dim_feedforward"):
            check_config(getattr(self, field) > 0, f"{field} must be positive")
        check_config(self.d_model % self.num_heads == 0, "d_model must be divisible by num_heads")
        check_config(0.0 <= self.dropout < 1.0, "dropout must lie in [0, 1)")


class TransformerSeed001(SequenceModel):
    """Seed 001 (multi-modal multi-task AU + EXPR, ABAW 2021), Sec. 3.2 and Fig. 2.

    The modality features are concatenated and passed through a fusion layer (linear, to d_model), sinusoidal position
    encodings are added, one transformer encoder layer (post-norm, as in [19]) extracts the sequence features, and a
    fully connected layer per task predicts every frame. ``frame_mask`` is the encoder's key padding mask, so real
    frames never attend to the padding at the end of a window. The paper predicts AU and EXPR; VA works through the
    shared tanh head.
    """

    def __init__(self, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec], config: TransformerSeed001Config):
        super().__init__(modality_dims, tasks, config)
        c = config
        self.fusion = nn.Linear(sum(self.modality_dims.values()), c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = transformer_encoder(c.d_model, c.num_heads, c.dim_feedforward, c.dropout, c.num_layers)
        self.heads = TaskHeads(c.d_model, self.tasks)

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        xs, mask = self.gather_inputs(inputs, frame_mask)
        h = self.fusion(torch.cat(xs, dim=-1))
        if self.config.positional_encoding:
            h = h + sinusoidal_positions(h.shape[1], h.shape[2], h.device, h.dtype)
        return self.heads(encode_sequence(self.encoder, self.dropout(h), mask))
