"""Recurrent models: the seed 002 audio-video GRU and the M3T bi-GRU with concatenation or attention fusion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from eval.tasks import TaskSpec

from .base import ChannelPReLU, ModalityProjection, SequenceBatchNorm, SequenceModel, check_config, run_rnn
from .heads import TaskHeads


# ----------------------------------------------------------------------------------------------------------------------
# Seed 002: per-modality GRU stacks -> concat -> dense -> tanh
# ----------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GruSeed002Config:
    """Hyperparameters of :class:`GruSeed002` (defaults from seed 002, Sec. I-C).

    A modality named in ``audio_modalities`` gets the audio stack, one in ``dense_modalities`` the per-frame dense
    stack (the paper's OpenFace pose/gaze/AU branch), any other the ExpNet ("visual") GRU stack.
    """

    audio_units: tuple[int, ...] = (128, 64)        # "two layers of GRU with 128 and 64 units"
    audio_dropout: float = 0.25                     # "PReLU ... with a dropout of 0.25 for each layer output"
    visual_units: tuple[int, ...] = (256, 256, 64)  # ExpNet: "three layers of GRU with 256, 256 and 64 units"
    visual_dropout: float = 0.0                     # the paper gives the visual GRUs no dropout
    dense_units: tuple[int, ...] = (128, 64)        # OpenFace: "two TimeDistributed Dense layers with 128 and 64"
    dense_dropout: float = 0.25
    audio_modalities: tuple[str, ...] = ("audio",)
    dense_modalities: tuple[str, ...] = ()
    fusion_units: int = 64                          # "two dense layers with 64 and 2 units"
    batch_norm: bool = True                         # "All the layer outputs are followed by batch normalization"

    def __post_init__(self):
        for field in ("audio_units", "visual_units", "dense_units"):
            units = getattr(self, field)
            check_config(len(units) > 0 and all(u > 0 for u in units), f"{field} must be positive sizes, got {units}")
        for field in ("audio_dropout", "visual_dropout", "dense_dropout"):
            check_config(0.0 <= getattr(self, field) < 1.0, f"{field} must lie in [0, 1)")
        check_config(self.fusion_units > 0, "fusion_units must be positive")


class _Seed002Branch(nn.Module):
    """One modality's stack: [GRU or Linear] -> PReLU -> dropout -> batch norm, per layer."""

    def __init__(self, in_dim: int, units: Sequence[int], dropout: float, recurrent: bool, batch_norm: bool):
        super().__init__()
        self.recurrent = recurrent
        self.layers = nn.ModuleList()
        self.acts = nn.ModuleList()
        self.norms = nn.ModuleList()
        for size in units:
            self.layers.append(nn.GRU(in_dim, size, batch_first=True) if recurrent else nn.Linear(in_dim, size))
            self.acts.append(ChannelPReLU(size))
            self.norms.append(SequenceBatchNorm(size) if batch_norm else nn.Identity())
            in_dim = size
        self.dropout = nn.Dropout(dropout)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer, act, norm in zip(self.layers, self.acts, self.norms):
            x = layer(x)[0] if self.recurrent else layer(x)
            x = self.dropout(act(x))
            x = norm(x, mask) if isinstance(norm, SequenceBatchNorm) else norm(x)
        return x


class GruSeed002(SequenceModel):
    """Seed 002 (audio-video GRU for valence-arousal, ABAW 2020), Sec. I-C and Fig. 1.

    Each modality runs through its own stack of unidirectional (Keras-style, causal) GRUs, each followed by PReLU
    (one slope per unit), dropout (0.25 on the audio stack) and batch normalization: audio GRU 128 -> 64, ExpNet visual
    GRU 256 -> 256 -> 64 (our ``face``/``word`` features take this stack), optional OpenFace-style time-distributed
    dense 128 -> 64 with dropout 0.25. The 64-d branch outputs are concatenated and passed through a dense 64 layer
    and the output layer; tanh on valence/arousal, as in the paper. The paper names no activation for the dense 64
    layer; PReLU is used as everywhere else in the network. Batch statistics use real frames only. The paper evaluated
    VA only; the shared heads let the same trunk predict EXPR/AU logits.
    """

    def __init__(self, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec], config: GruSeed002Config):
        super().__init__(modality_dims, tasks, config)
        c = config
        self.branches = nn.ModuleDict()
        for name, dim in self.modality_dims.items():
            if name in c.audio_modalities:
                branch = _Seed002Branch(dim, c.audio_units, c.audio_dropout, True, c.batch_norm)
            elif name in c.dense_modalities:
                branch = _Seed002Branch(dim, c.dense_units, c.dense_dropout, False, c.batch_norm)
            else:
                branch = _Seed002Branch(dim, c.visual_units, c.visual_dropout, True, c.batch_norm)
            self.branches[name] = branch
        fused = sum(branch.out_dim for branch in self.branches.values())
        self.fusion = nn.Linear(fused, c.fusion_units)
        self.fusion_act = ChannelPReLU(c.fusion_units)
        self.heads = TaskHeads(c.fusion_units, self.tasks)

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        xs, mask = self.gather_inputs(inputs, frame_mask)
        encoded = [self.branches[name](x, mask) for name, x in zip(self.modalities, xs)]
        fused = self.fusion_act(self.fusion(torch.cat(encoded, dim=-1)))
        return self.heads(fused)


# ----------------------------------------------------------------------------------------------------------------------
# M3T: per-modality projection -> concat or attention fusion -> 2-layer bi-GRU -> two FC layers
# ----------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class M3TConcatConfig:
    """Hyperparameters of :class:`M3TConcat` (M3T, Sec. II-B/II-C)."""

    modality_dim: int = 512   # "projected to 512 dimensions with a fully connected layer"; the audio GRU outputs 512
    gru_hidden: int = 512     # fusion bi-GRU cells; the paper gives none for it, the acoustic bi-GRU has 512 (II-B)
    gru_layers: int = 2       # "a two-layer bidirectional GRU"
    fc_dim: int = 512         # first of the "two fully-connected layers" (the acoustic MLP is 512 -> 512 -> 512)
    dropout: float = 0.0      # the paper uses no dropout (only weight decay 1e-4, Sec. III-B)

    def __post_init__(self):
        for field in ("modality_dim", "gru_hidden", "gru_layers", "fc_dim"):
            check_config(getattr(self, field) > 0, f"{field} must be positive")
        check_config(0.0 <= self.dropout < 1.0, "dropout must lie in [0, 1)")


@dataclass(frozen=True)
class M3TAttentionConfig(M3TConcatConfig):
    """Hyperparameters of :class:`M3TAttention`: those of concat fusion plus the quality-score bi-GRU (Sec. II-C)."""

    score_hidden: int = 128   # "h as a one-layer bi-GRU with 128 hidden units, followed by the sigmoid function"

    def __post_init__(self):
        super().__post_init__()
        check_config(self.score_hidden > 0, "score_hidden must be positive")


class _M3TBase(SequenceModel):
    def __init__(self, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec], config: M3TConcatConfig,
                 fused_dim: int):
        super().__init__(modality_dims, tasks, config)
        c = config
        self.projection = ModalityProjection(self.modality_dims, c.modality_dim, c.dropout)
        self.gru = nn.GRU(fused_dim, c.gru_hidden, num_layers=c.gru_layers, batch_first=True, bidirectional=True,
                          dropout=c.dropout if c.gru_layers > 1 else 0.0)
        self.fc = nn.Sequential(nn.Linear(2 * c.gru_hidden, c.fc_dim), nn.ReLU(), nn.Dropout(c.dropout))
        self.heads = TaskHeads(c.fc_dim, self.tasks)

    def fuse(self, features: list[torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        xs, mask = self.gather_inputs(inputs, frame_mask)
        fused = self.fuse(self.projection(xs), mask)
        hidden = run_rnn(self.gru, fused, mask)
        return self.heads(self.fc(hidden))


class M3TConcat(_M3TBase):
    """M3T (multi-modal multi-task VA estimation, ABAW 2020), Sec. II-C, concatenation ("late") fusion.

    Each modality's frame features are projected to 512-d by a fully connected layer (+ ReLU), the projections are
    concatenated, passed through a 2-layer bidirectional GRU and two fully connected layers (512, then one linear head
    per task). Bidirectional, so it runs packed to each row's real length. The 3D-conv visual trunk and the acoustic
    bi-GRU of Sec. II-A/II-B are replaced by the store's frame-level features. The paper trained VA with an expression
    cross-entropy term (eq. 4); AU heads work too.
    """

    def __init__(self, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec], config: M3TConcatConfig):
        super().__init__(modality_dims, tasks, config, fused_dim=config.modality_dim * len(modality_dims))

    def fuse(self, features: list[torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        return torch.cat(features, dim=-1)


class M3TAttention(_M3TBase):
    """M3T (ABAW 2020), Sec. II-C, attention fusion (eqs. 5-6, Fig. 3).

    Per modality m, a quality score h^m_t = sigmoid(w^T BiGRU_m(x^m)_t + b) from a one-layer bi-GRU with 128 hidden
    units; alpha^m_t = softmax over modalities of h^m_t (eq. 5); the fused frame f_t = sum_m alpha^m_t x^m_t (eq. 6)
    of the 512-d projected features, then the same 2-layer bi-GRU and two FC layers as :class:`M3TConcat`. The
    weights of the last forward pass are kept in ``last_fusion_weights`` (B, L, M), in the order of
    ``fusion_modalities``; they sum to 1 over M.
    """

    def __init__(self, modality_dims: Mapping[str, int], tasks: Sequence[TaskSpec], config: M3TAttentionConfig):
        super().__init__(modality_dims, tasks, config, fused_dim=config.modality_dim)
        self.scorers = nn.ModuleDict({name: nn.GRU(config.modality_dim, config.score_hidden, batch_first=True,
                                                   bidirectional=True) for name in self.modalities})
        self.score_out = nn.ModuleDict({name: nn.Linear(2 * config.score_hidden, 1) for name in self.modalities})
        self.fusion_modalities = self.modalities
        self.last_fusion_weights: torch.Tensor | None = None

    def fusion_weights(self, features: list[torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        """(B, L, M) alpha of eq. 5 for projected features."""
        scores = [torch.sigmoid(self.score_out[name](run_rnn(self.scorers[name], x, mask)))
                  for name, x in zip(self.modalities, features)]
        return torch.softmax(torch.cat(scores, dim=-1), dim=-1)

    def fuse(self, features: list[torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        alpha = self.fusion_weights(features, mask)
        self.last_fusion_weights = alpha.detach()
        return (torch.stack(features, dim=-1) * alpha.unsqueeze(-2)).sum(dim=-1)
