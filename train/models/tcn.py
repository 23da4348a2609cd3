"""Temporal-convolution models: the ABAW3 per-modality TCN with co-attention fusion, and a TSAV-style conv head."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from eval.tasks import TaskSpec

from .base import SequenceModel, check_config, pad_time
from .heads import TaskHeads

PLUS_ONE_MODES = ("identity", "ones")


def co_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 plus_one: str = "identity") -> tuple[torch.Tensor, torch.Tensor]:
    """ABAW3 eq. 1 over the modality axis: ``(softmax(Q K^T / sqrt(d_K)) + 1) V``.

    ``q``, ``k``: (..., M, d_K), ``v``: (..., M, d_V), one row per modality. The "+ 1" is read as the identity
    (``plus_one="identity"``: A V + V, the residual the authors' released code adds before its layer norm) or as an
    all-ones matrix (``"ones"``: every output row also gets the sum of all value rows). The scores are Q K^T as the
    report writes them (the released code computes K Q^T). Returns (output, A), A: (..., M, M), rows summing to 1.
    """
    if plus_one not in PLUS_ONE_MODES:
        raise ValueError(f"plus_one must be one of {PLUS_ONE_MODES}, got {plus_one!r}")
    scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    if plus_one == "identity":
        return scores @ v + v, scores
    return (scores + 1.0) @ v, scores


class CoAttentionFusion(nn.Module):
    """ABAW3 co-attention block (Sec. 2, Fig. 1): per modality i three independent linear layers give Q_i, K_i, V_i
    (width ``key_dim`` = d_K = 32); they are stacked over modalities, Q = [Q_1, ..., Q_M], attended with
    :func:`co_attention` at every frame, layer-normalized and flattened to (B, L, M * key_dim). With ``num_heads`` > 1
    the key width is split into heads (d_K = key_dim / num_heads each). ``last_attention``: (B, L, heads, M, M)."""

    def __init__(self, in_dims: Mapping[str, int], key_dim: int = 32, num_heads: int = 1,
                 plus_one: str = "identity"):
        super().__init__()
        if key_dim % num_heads:
            raise ValueError(f"key_dim {key_dim} is not divisible by num_heads {num_heads}")
        if plus_one not in PLUS_ONE_MODES:
            raise ValueError(f"plus_one must be one of {PLUS_ONE_MODES}, got {plus_one!r}")
        self.modalities = tuple(in_dims)
        self.key_dim, self.num_heads, self.plus_one = key_dim, num_heads, plus_one
        self.query = nn.ModuleDict({name: nn.Linear(dim, key_dim) for name, dim in in_dims.items()})
        self.key = nn.ModuleDict({name: nn.Linear(dim, key_dim) for name, dim in in_dims.items()})
        self.value = nn.ModuleDict({name: nn.Linear(dim, key_dim) for name, dim in in_dims.items()})
        self.norm = nn.LayerNorm(len(self.modalities) * key_dim)
        self.out_dim = len(self.modalities) * key_dim
        self.last_attention: torch.Tensor | None = None

    def _stack(self, layers: nn.ModuleDict, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack([layers[name](x) for name, x in zip(self.modalities, xs)], dim=-2)  # (B, L, M, key)
        b, l, m, _ = stacked.shape
        return stacked.reshape(b, l, m, self.num_heads, -1).transpose(-2, -3)  # (B, L, H, M, key / H)

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        q, k, v = self._stack(self.query, xs), self._stack(self.key, xs), self._stack(self.value, xs)
        out, attention = co_attention(q, k, v, self.plus_one)
        self.last_attention = attention.detach()
        b, l = out.shape[:2]
        return self.norm(out.transpose(-2, -3).reshape(b, l, self.out_dim))


class TemporalBlock(nn.Module):
    """Bai et al. residual block as used by ABAW3: two causal dilated convs (weight norm), LeakyReLU, dropout, and a
    1x1 conv on the skip path when the width changes."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int, dropout: float, weight_norm: bool):
        super().__init__()
        wrap = _weight_norm if weight_norm else (lambda module: module)
        self.kernel_size, self.dilation = kernel_size, dilation
        self.conv1 = wrap(nn.Conv1d(in_ch, out_ch, kernel_size, dilation=dilation))
        self.conv2 = wrap(nn.Conv1d(out_ch, out_ch, kernel_size, dilation=dilation))
        self.act = nn.LeakyReLU()
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L)
        y = self.dropout(self.act(self.conv1(pad_time(x, self.kernel_size, self.dilation, causal=True))))
        y = self.dropout(self.act(self.conv2(pad_time(y, self.kernel_size, self.dilation, causal=True))))
        return self.act(y + self.downsample(x))


class TemporalConvNet(nn.Module):
    """Causal TCN: one :class:`TemporalBlock` per entry of ``channels``, dilation 2**i. (B, L, D) -> (B, L, C_last)."""

    def __init__(self, in_dim: int, channels: Sequence[int], kernel_size: int, dropout: float, weight_norm: bool):
        super().__init__()
        blocks, width = [], in_dim
        for i, out_ch in enumerate(channels):
            blocks.append(TemporalBlock(width, out_ch, kernel_size, 2 ** i, dropout, weight_norm))
            width = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.transpose(1, 2)).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------------------
# ABAW3 co-attention TCN
# ----------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TcnCoAttentionConfig:
    """Hyperparameters of :class:`TcnCoAttention`. The report (Sec. 2) gives d_K = 32 and names the TCN of Bai et al.;
    the TCN sizes follow the authors' released code (github.com/sucv/ABAW3, ``configs.py``): kernel 5, dropout 0.1,
    four levels with dilations 1, 2, 4, 8 and widths D/2, D/2, D/4, D/4 of the input width D, taken as at most 512
    (ResNet50 512 -> 256, 256, 128, 128; VGGish 128 -> 64, 64, 32, 32; BERT 768 -> 256, 256, 128, 128)."""

    kernel_size: int = 5
    channel_fractions: tuple[float, ...] = (0.5, 0.5, 0.25, 0.25)
    channel_cap: int = 512
    min_channels: int = 8
    dropout: float = 0.1
    weight_norm: bool = True
    key_dim: int = 32                 # d_K of eq. 1
    num_heads: int = 1                # the report's eq. 1 is one head with d_K = 32
    plus_one: str = "identity"        # how eq. 1's "+ 1" is read: "identity" (authors' code) or "ones"
    visual_modality: str = "face"     # whose TCN encoding is concatenated to the fused feature; else the first one

    def __post_init__(self):
        check_config(self.kernel_size > 0, "kernel_size must be positive")
        check_config(len(self.channel_fractions) > 0 and all(f > 0 for f in self.channel_fractions),
                     "channel_fractions must be positive")
        check_config(self.channel_cap > 0 and self.min_channels > 0, "channel_cap and min_channels must be positive")
        check_config(0.0 <= self.dropout < 1.0, "dropout must lie in [0, 1)")
        check_config(self.key_dim > 0 and self.num_heads > 0 and self.key_dim % self.num_heads == 0,
                     "key_dim must be a positive multiple of num_heads")
        check_config(self.plus_one in PLUS_ONE_MODES, f"plus_one must be one of {PLUS_ONE_MODES}")

    def channels_for(self, in_dim: int) -> tuple[int, ...]:
        base = min(in_dim, self.channel_cap)
        return tuple(max(self.min_channels, int(base * fraction)) for fraction in self.channel_fractions)


class TcnCoAttention(SequenceModel):
    """ABAW3 visual-audio-linguistic co-attention model (Zhang et al., ABAW3), Sec. 2, eq. 1 and Fig. 1.

    One causal TCN per modality (temporal encoding; sizes in :class:`TcnCoAttentionConfig`), a co-attention block
    over the modalities at every frame, ``(softmax(Q K^T / sqrt(d_K)) + 1) V`` with d_K = 32, layer norm, the visual
    TCN encoding concatenated ("to emphasize the visual information"), and one fully connected layer per task. The
    visual modality is ``config.visual_modality`` ("face") when present, else the first modality. Causal TCNs never
    read the padding at the end of a window. The paper predicts VA; the shared heads serve EXPR/AU as well.
    """

    def __init__(self, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec], config: TcnCoAttentionConfig):
        super().__init__(modality_dims, tasks, config)
        c = config
        self.visual_modality = c.visual_modality if c.visual_modality in self.modality_dims else self.modalities[0]
        self.tcns = nn.ModuleDict({name: TemporalConvNet(dim, c.channels_for(dim), c.kernel_size, c.dropout,
                                                         c.weight_norm) for name, dim in self.modality_dims.items()})
        self.fusion = CoAttentionFusion({name: tcn.out_dim for name, tcn in self.tcns.items()}, c.key_dim,
                                        c.num_heads, c.plus_one)
        self.heads = TaskHeads(self.tcns[self.visual_modality].out_dim + self.fusion.out_dim, self.tasks)

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        xs, _ = self.gather_inputs(inputs, frame_mask)
        encoded = {name: self.tcns[name](x) for name, x in zip(self.modalities, xs)}
        fused = self.fusion([encoded[name] for name in self.modalities])
        return self.heads(torch.cat([encoded[self.visual_modality], fused], dim=-1))


# ----------------------------------------------------------------------------------------------------------------------
# TSAV-style temporal-convolution head
# ----------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TsavTcnConfig:
    """Hyperparameters of :class:`TsavTcn` (TSAV, Sec. III-A/B/C and V-A)."""

    channels: int = 512                  # R(2+1)D-18 and ResNet18 both end in 512-d features (Sec. III-C)
    visual_kernel_size: int = 8          # clip length l = 8 (Sec. V-A)
    visual_dilation: int = 6             # clip dilation d = 6 (Sec. V-A): frames t, t-6, ..., t-42
    aural_kernel_size: int = 11          # 11 taps 30 frames apart: 10 s centred on t at 30 fps, like the
    aural_dilation: int = 30             # w = 10 s sub-spectrogram centred on the frame (Sec. III-B, V-A)
    aural_modalities: tuple[str, ...] = ("audio",)
    dropout: float = 0.0                 # the paper uses none

    def __post_init__(self):
        for field in ("channels", "visual_kernel_size", "visual_dilation", "aural_kernel_size", "aural_dilation"):
            check_config(getattr(self, field) > 0, f"{field} must be positive")
        check_config(0.0 <= self.dropout < 1.0, "dropout must lie in [0, 1)")


class TsavTcn(SequenceModel):
    """TSAV two-stream aural-visual model (Kuhnke et al., ABAW 2020), Sec. III-C, as a temporal-convolution head.

    Per modality one temporal convolution over the frame features, standing in for the paper's clip sampling: visual
    (every non-aural modality) causal, kernel 8 at dilation 6 -- the frame at t and the 7 preceding frames 6 apart,
    the paper's R(2+1)D input clip; aural centred, kernel 11 at dilation 30 -- 10 s around t, the paper's
    sub-spectrogram. Each gives 512 channels + ReLU; the streams are concatenated and "a single fully connected layer"
    predicts all three representations (VA through tanh, EXPR and AU logits). Fully convolutional, no recurrence.
    One layer per stream, so the centred aural conv sees zeros past a window's end exactly as in a shorter sequence.
    """

    def __init__(self, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec], config: TsavTcnConfig):
        super().__init__(modality_dims, tasks, config)
        c = config
        self.convs = nn.ModuleDict()
        self.geometry: dict[str, tuple[int, int, bool]] = {}
        for name, dim in self.modality_dims.items():
            if name in c.aural_modalities:
                kernel, dilation, causal = c.aural_kernel_size, c.aural_dilation, False
            else:
                kernel, dilation, causal = c.visual_kernel_size, c.visual_dilation, True
            self.convs[name] = nn.Conv1d(dim, c.channels, kernel, dilation=dilation)
            self.geometry[name] = (kernel, dilation, causal)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(c.dropout)
        self.heads = TaskHeads(c.channels * len(self.modalities), self.tasks)

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        xs, _ = self.gather_inputs(inputs, frame_mask)
        streams = []
        for name, x in zip(self.modalities, xs):
            kernel, dilation, causal = self.geometry[name]
            y = self.convs[name](pad_time(x.transpose(1, 2), kernel, dilation, causal))
            streams.append(self.dropout(self.act(y)).transpose(1, 2))
        return self.heads(torch.cat(streams, dim=-1))
