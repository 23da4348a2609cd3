"""Trunk models: networks trained end to end on face crops and spectrograms, predicting every frame of a window.

- :class:`Tsav` (TSAV, seed 004, Sec. III-C): R(2+1)D-18 on each frame's 8-frame clip + ResNet-18 on its 10 s
  sub-spectrogram -> concat -> one FC layer.
- :class:`M3T3DVgg` (M3T, seed 000, Sec. II-A, Fig. 2): a 3D VGG-like net over the window's crops, shared then
  per-branch (valence, arousal) conv blocks, + routed 2D static features -> bi-GRU -> FC per branch.
- :class:`TdnnTransformer` (seed 001, Sec. 3.2, 4.2): an x-vector TDNN on each frame's fine log-Mel rows + the
  visual frame features -> fusion layer -> transformer encoder -> FC.
- :class:`FrameCnn` (ABAW3, seed 003, Sec. 2; seed 001's IResNet): a 2D CNN fine-tuned on each frame's crop ->
  TCN / bi-GRU / transformer over the window -> FC.

Input contract (what :mod:`train.clips` delivers; see its docstring): ``forward(inputs, frame_mask=None) ->
{task: (B, L, n_outputs)}`` with

- ``inputs["face_clip"]`` uint8 (B, L, K, S, S, C): for each of the window's L frames the K crops t - (K-1) d, ...,
  t (oldest first; C = 3 RGB or 4 = RGB + ``face_mask``), zeros where there is no face; ``inputs["face_clip_valid"]``
  (B, L, K) bool (optional: all valid);
- ``inputs["spectrogram"]`` float32 (B, L, R, F): R raw log-Mel rows (dB) centred on each frame (row R // 2 is the
  frame's), zeros outside the audio; ``inputs["spectrogram_valid"]`` (B, L, R) bool (optional: all valid);
- any other key: a standardised per-frame vector feature (B, L, D) named by modality or feature;
- ``frame_mask`` (B, L) bool, False on the padding at a window's end.

``modality_dims`` (constructor): ``{"face_clip": (K, S, S, C), "spectrogram": (R, F), name: D, ...}``. Every config
has ``clip_frames`` (K), ``clip_dilation`` (d) and ``spectrogram_rows`` (R; 0 = no spectrogram), which the data side
reads to cut the inputs. Per-frame trunks run on the real frames only (padding never enters their batch norms);
recurrent layers run packed, attention masks the padding, and M3T's 3D convs zero the padded frames after every block,
so padding never reaches a real frame's output.

Memory format: with ``channels_last`` (default) the conv trunks' inputs are ``torch.channels_last`` (2D) or
``torch.channels_last_3d`` (3D) on CUDA, so cuDNN runs them in the layout its tensor-core kernels prefer under
autocast; on the CPU they stay contiguous (:func:`channels_last_on_cuda`). Nothing here needs CUDA; mixed precision
is the training loop's autocast.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from eval.tasks import TaskSpec

from .backbones import find_weights, image_resnet, iresnet, load_pretrained, video_resnet
from .base import check_config, run_rnn
from .clip_input import NORMALIZATIONS, ClipInput, channels_last_on_cuda, crop_size
from .heads import TaskHeads, check_tasks
from .tcn import TemporalConvNet
from .transformer import encode_sequence, sinusoidal_positions, transformer_encoder

LOG = logging.getLogger("affectsync.train")

TRUNK_INPUTS = ("face_clip", "spectrogram")
INPUT_SOURCES = {
    "face_clip": "FEATURES=face_crop (add face_mask for the 4th, mask channel)",
    "spectrogram": "FEATURES=mel64 (TSAV's 100 rows/s) or mel64_fine (seed 001's 200 rows/s)",
}
"""Which stored features give each trunk input (:mod:`train.clips`)."""

TORCHVISION_URL = "https://download.pytorch.org/models/"
R2PLUS1D_18_FILE = "r2plus1d_18-91a641e6.pth"
RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET50_FILE = "resnet50-11ad3fa6.pth"
ARCFACE_FILE = "arcface_torch backbone.pth (e.g. glint360k_cosface_r100, insightface model zoo)"


def _shape(name: str, dim: Any, n: int) -> tuple[int, ...]:
    if not isinstance(dim, list | tuple) or len(dim) != n or any(
            isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dim):
        raise ValueError(f"modality {name!r}: expected {n} positive sizes, got {dim!r}")
    return tuple(dim)


def check_trunk_dims(modality_dims: Mapping[str, Any]) -> dict[str, int | tuple[int, ...]]:
    """``modality_dims`` checked: ``face_clip`` (K, S, S, C) with C 3 or 4, ``spectrogram`` (R, F), others D > 0."""
    dims: dict[str, int | tuple[int, ...]] = {}
    for name, dim in dict(modality_dims).items():
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"modality names must be non-empty strings without '.', got {name!r}")
        if name == "face_clip":
            dims[name] = _shape(name, dim, 4)
            if dim[1] != dim[2] or dim[3] not in (3, 4):
                raise ValueError(f"face_clip must be (K, S, S, C) square crops with C 3 or 4, got {dim!r}")
        elif name == "spectrogram":
            dims[name] = _shape(name, dim, 2)
        elif isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"modality {name!r}: feature size must be a positive int, got {dim!r}")
        else:
            dims[name] = dim
    if not dims:
        raise ValueError("a model needs at least one input")
    return dims


def run_per_frame(fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor | None],
                  mask: torch.Tensor | None) -> torch.Tensor:
    """``fn`` over the real frames of (B, L, ...) tensors flattened to (N, ...) -> (B, L, D), zeros at padding.
    None entries pass through as None. With no real frame at all, the first frame runs (keeps the graph whole)."""
    first = next(t for t in tensors if t is not None)
    batch, length = first.shape[:2]
    flat = [None if t is None else t.reshape(batch * length, *t.shape[2:]) for t in tensors]
    if mask is None:
        return fn(*flat).reshape(batch, length, -1)
    keep = mask.reshape(-1)
    if not bool(keep.any()):
        keep = keep.clone()
        keep[0] = True
    out = fn(*[None if t is None else t[keep] for t in flat])
    full = out.new_zeros(batch * length, out.shape[-1])
    full[keep] = out
    return full.reshape(batch, length, -1)


class SpectrogramNorm(nn.Module):
    """Per-band standardisation of raw dB rows (N, R, F) with batch statistics over the valid rows while training and
    running ones (momentum 0.1) in eval mode, like a BatchNorm1d without affine whose statistics skip the rows outside
    the audio; those rows become 0 (the mean level) afterwards. The stored dB have no fixed reference level (silence
    is about -100 dB), so a learnt scale suits better than a fixed (x + 40) / 40."""

    def __init__(self, bands: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(bands))
        self.register_buffer("running_var", torch.ones(bands))

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        x = x.float()
        weight = None if valid is None else valid.unsqueeze(-1).to(x.dtype)
        mean, var = self.running_mean, self.running_var
        if self.training:  # without a host sync: a batch without valid rows keeps (and uses) the running statistics
            w = torch.ones_like(x[..., :1]) if weight is None else weight
            count = w.sum((0, 1))
            batch_mean = (x * w).sum((0, 1)) / count.clamp(min=1)
            batch_var = ((x - batch_mean) ** 2 * w).sum((0, 1)) / count.clamp(min=1)
            mean = torch.where(count > 0, batch_mean, self.running_mean)
            var = torch.where(count > 0, batch_var, self.running_var)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        out = (x - mean) * torch.rsqrt(var + self.eps)
        return out if weight is None else out * weight


# ----------------------------------------------------------------------------------------------------------------------
# Base class
# ----------------------------------------------------------------------------------------------------------------------

class TrunkModel(nn.Module):
    """Base of the trunk models: stores ``modality_dims`` (checked), ``modalities`` (their order),
    ``vector_modalities`` (the per-frame vector inputs), ``tasks``, ``task_names``, ``config`` and
    ``pretrained_sha256`` (role -> sha256 of each pretrained file loaded). ``spec`` is set by the registry."""

    spec: Any = None
    name = "trunk"

    def __init__(self, modality_dims: Mapping[str, Any], tasks: Sequence[TaskSpec], config: Any):
        super().__init__()
        self.modality_dims = check_trunk_dims(modality_dims)
        self.modalities = tuple(self.modality_dims)
        self.vector_modalities = tuple(name for name in self.modalities if name not in TRUNK_INPUTS)
        self.tasks = check_tasks(tasks)
        self.task_names = tuple(task.name for task in self.tasks)
        self.config = config
        self.pretrained_sha256: dict[str, str] = {}

    def missing(self, *names: str) -> ValueError:
        need = " or ".join(names)
        sources = "; ".join(f"{name} comes from {INPUT_SOURCES[name]}" for name in names)
        return ValueError(f"{self.name} needs input {need}, which is not among its inputs {list(self.modalities)}: "
                          f"{sources}")

    def clip_dims(self) -> tuple[int, int, int]:
        """(K, S, C) of ``face_clip``, checked against ``config.clip_frames``."""
        if "face_clip" not in self.modality_dims:
            raise self.missing("face_clip")
        k, size, _, channels = self.modality_dims["face_clip"]
        if k != self.config.clip_frames:
            raise ValueError(f"{self.name}: face_clip has {k} frames per clip, the config's clip_frames is "
                             f"{self.config.clip_frames}")
        return k, size, channels

    def spectrogram_dims(self) -> tuple[int, int]:
        """(R, F) of ``spectrogram``, checked against ``config.spectrogram_rows``."""
        if "spectrogram" not in self.modality_dims:
            raise self.missing("spectrogram")
        rows, bands = self.modality_dims["spectrogram"]
        if rows != self.config.spectrogram_rows:
            raise ValueError(f"{self.name}: spectrogram has {rows} rows per frame, the config's spectrogram_rows is "
                             f"{self.config.spectrogram_rows}")
        return rows, bands

    def input(self, inputs: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        """``inputs[name]`` after checking its per-frame shape against ``modality_dims``."""
        if name not in inputs:
            raise ValueError(f"{self.name}: inputs lack {name!r}; the model was built for {list(self.modalities)}")
        x, dim = inputs[name], self.modality_dims[name]
        tail = tuple(dim) if isinstance(dim, tuple) else (dim,)
        if x.dim() != 2 + len(tail) or tuple(x.shape[2:]) != tail:
            raise ValueError(f"{self.name}: input {name!r} has shape {tuple(x.shape)}; expected (B, L, "
                             f"{', '.join(map(str, tail))})")
        return x

    @staticmethod
    def real_frames(frame_mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """``frame_mask`` as bool on ``x``'s device, or None when every frame is real."""
        if frame_mask is None:
            return None
        if tuple(frame_mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"frame_mask has shape {tuple(frame_mask.shape)}; expected {tuple(x.shape[:2])}")
        mask = frame_mask.to(device=x.device, dtype=torch.bool)
        return None if bool(mask.all()) else mask

    def vectors(self, inputs: Mapping[str, torch.Tensor], names: Sequence[str],
                mask: torch.Tensor | None) -> list[torch.Tensor]:
        """The vector inputs ``names`` (B, L, D), float, padded frames zeroed."""
        xs = [self.input(inputs, name).float() for name in names]
        if mask is None:
            return xs
        weight = mask.unsqueeze(-1).float()
        return [x * weight for x in xs]

    def load_or_log(self, module: nn.Module, path: str, role: str, field: str, hint: str, **kwargs: Any) -> None:
        """Load ``path`` into ``module`` (sha256 kept under ``role``), or say at INFO which file would start it."""
        if path:
            found = find_weights(path, f"make weights FEATURES=train:{self.name}")
            self.pretrained_sha256[role] = load_pretrained(module, found, **kwargs)
            LOG.info("%s: %s trunk starts from %s (sha256 %s)", self.name, role, found, self.pretrained_sha256[role])
        else:
            LOG.info("%s: %s trunk starts from random weights (%s= a %s; `make weights FEATURES=train:%s` brings "
                     "it)", self.name, role, field, hint, self.name)


def _positive(config: Any, *fields: str) -> None:
    for field in fields:
        value = getattr(config, field)
        values = value if isinstance(value, tuple) else (value,)
        check_config(len(values) > 0 and all(v > 0 for v in values), f"{field} must be positive, got {value!r}")


def _check_common(config: Any) -> None:
    _positive(config, "clip_frames", "clip_dilation")
    check_config(config.spectrogram_rows >= 0, "spectrogram_rows must be at least 0")
    check_config(0.0 < getattr(config, "crop_fraction", 1.0) <= 1.0, "crop_fraction must lie in (0, 1]")
    check_config(0.0 <= config.dropout < 1.0, "dropout must lie in [0, 1)")


# ----------------------------------------------------------------------------------------------------------------------
# TSAV
# ----------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TsavConfig:
    """Hyperparameters of :class:`Tsav` (TSAV, seed 004, Sec. III-A/B/C and V-A). The paper gives no dropout (0);
    clips are normalised with torchvision's Kinetics-400 statistics, those the pretrained R(2+1)D-18 was trained on."""

    visual_widths: tuple[int, ...] = (64, 128, 256, 512)   # R(2+1)D-18 (Sec. III-C)
    aural_widths: tuple[int, ...] = (64, 128, 256, 512)    # ResNet-18 (Sec. III-C)
    clip_frames: int = 8                # clip length l = 8 (Sec. V-A)
    clip_dilation: int = 6              # dilation d = 6 (Sec. V-A): frames t - 42, ..., t - 6, t
    spectrogram_rows: int = 1001        # w = 10 s at 10 ms stride: 10 / 0.01 + 1 = 1001 rows x 64 mels (Sec. III-B)
    crop_fraction: float = 112 / 128    # 112 px clips (Sec. V-A) cut from the store's 128 px crops
    normalization: str = "kinetics"
    dropout: float = 0.0
    pretrained_visual: str = ""         # torchvision r2plus1d_18-91a641e6.pth (Kinetics-400); "" = random init
    pretrained_aural: str = ""          # torchvision resnet18-f37072fd.pth (ImageNet); "" = random init
    channels_last: bool = True

    def __post_init__(self):
        _check_common(self)
        _positive(self, "visual_widths", "aural_widths")
        check_config(len(self.visual_widths) == 4 and len(self.aural_widths) == 4, "widths take 4 stage widths")
        check_config(self.normalization in NORMALIZATIONS, f"normalization must be one of {list(NORMALIZATIONS)}")


class Tsav(TrunkModel):
    """TSAV two-stream aural-visual network (Kuhnke et al., ABAW 2020), Sec. III-C and Fig. 1, end to end.

    ``visual``: R(2+1)D-18 (:func:`video_resnet`, first conv taking the clip's C channels: RGB + the landmark mask
    when ``face_mask`` is selected) on the K = 8 frames at dilation 6 ending at each frame, through :class:`ClipInput`
    (random 112 crop, flip, hue/saturation/lightness while training). ``aural``: ResNet-18 (:func:`image_resnet`, one
    input channel) on the frame's centred 1001 x 64 sub-spectrogram as a (1, R, F) image, after
    :class:`SpectrogramNorm` (``spectrogram_norm``). Both without their fc; the 512-d outputs are concatenated and "a
    single fully connected layer" (``heads``) predicts VA (tanh), EXPR and AU (logits). Either stream alone works
    (the other is None). Runs on the B x L real frames of the batch.
    """

    name = "tsav"

    def __init__(self, modality_dims: Mapping[str, Any], tasks: Sequence[TaskSpec], config: TsavConfig):
        super().__init__(modality_dims, tasks, config)
        c = config
        if "face_clip" not in self.modality_dims and "spectrogram" not in self.modality_dims:
            raise self.missing("face_clip", "spectrogram")
        width = 0
        self.visual = self.clip_input = self.aural = self.spectrogram_norm = None
        if "face_clip" in self.modality_dims:
            _, _, channels = self.clip_dims()
            self.clip_input = ClipInput(channels, c.crop_fraction, c.normalization, channels_last=c.channels_last)
            self.visual = video_resnet(c.visual_widths, in_channels=channels)
            self.load_or_log(self.visual, c.pretrained_visual, "visual", "pretrained_visual",
                             f"torchvision {R2PLUS1D_18_FILE}, {TORCHVISION_URL}{R2PLUS1D_18_FILE}")
            width += self.visual.out_features
        if "spectrogram" in self.modality_dims:
            _, bands = self.spectrogram_dims()
            self.spectrogram_norm = SpectrogramNorm(bands)
            self.aural = image_resnet(18, c.aural_widths, in_channels=1)
            self.load_or_log(self.aural, c.pretrained_aural, "aural", "pretrained_aural",
                             f"torchvision {RESNET18_FILE}, {TORCHVISION_URL}{RESNET18_FILE}")
            width += self.aural.out_features
        self.dropout = nn.Dropout(c.dropout)
        self.heads = TaskHeads(width, self.tasks)

    def _visual(self, clip: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        return self.visual(self.clip_input(clip, valid))

    def _aural(self, spectrogram: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        x = self.spectrogram_norm(spectrogram, valid).unsqueeze(1)  # (N, 1, R, F)
        return self.aural(channels_last_on_cuda(x, self.config.channels_last))

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        streams = []
        if self.visual is not None:
            clip = self.input(inputs, "face_clip")
            mask = self.real_frames(frame_mask, clip)
            streams.append(run_per_frame(self._visual, [clip, inputs.get("face_clip_valid")], mask))
        if self.aural is not None:
            spectrogram = self.input(inputs, "spectrogram")
            mask = self.real_frames(frame_mask, spectrogram)
            streams.append(run_per_frame(self._aural, [spectrogram, inputs.get("spectrogram_valid")], mask))
        return self.heads(self.dropout(torch.cat(streams, dim=-1)))


# ----------------------------------------------------------------------------------------------------------------------
# M3T 3D VGG visual network
# ----------------------------------------------------------------------------------------------------------------------

M3T_BRANCHES = ("valence", "arousal")


def parse_route(route: Sequence[str]) -> list[tuple[str, str]]:
    """``("valence=fer", "arousal=au_features")`` -> [(branch, input name)]; ValueError on a malformed entry or an
    unknown branch."""
    pairs = []
    for entry in route:
        branch, sep, name = str(entry).partition("=")
        if not sep or not name or branch not in M3T_BRANCHES:
            raise ValueError(f"route entry {entry!r} must read BRANCH=INPUT with BRANCH one of {M3T_BRANCHES}")
        pairs.append((branch, name))
    return pairs


@dataclass(frozen=True)
class M3T3DVggConfig:
    """Hyperparameters of :class:`M3T3DVgg` (M3T, seed 000, Sec. II-A, III-A/B).

    The paper follows V2P (Shillingford et al. 2018) without listing widths; V2P's five spatio-temporal conv layers
    have 64, 128, 256, 512, 512 filters, taken here as 3 shared (64, 128, 256) + 2 per branch (512, 512). The
    2-layer bi-GRU has "1024 cells"; "two fully-connected layers" follow (the first ``fc_dim`` wide; not given, 512 as
    in the acoustic net). Inputs "normalized to [-1, 1]" (``symmetric``); 112 px random crops of 128 px crops.
    ``route``: which 2D static features each branch gets ("valence=fer", "arousal=au_features"; the paper's default
    is emotion features -> valence, AU features -> arousal); empty = every vector input to both.
    """

    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    gru_hidden: int = 1024              # "a 2-layer, 1024-cell bidirectional ... GRU"
    gru_layers: int = 2
    fc_dim: int = 512
    route: tuple[str, ...] = ()
    clip_frames: int = 1                # the 3D convs run over the window's consecutive frames
    clip_dilation: int = 1
    spectrogram_rows: int = 0
    crop_fraction: float = 112 / 128    # "a random 112x112 crop" of the 128x128 aligned faces (Sec. III-A)
    normalization: str = "symmetric"    # "inputs ... normalized to [-1, 1]" (Sec. III-B)
    dropout: float = 0.0                # the paper uses none (weight decay 1e-4)
    channels_last: bool = True

    def __post_init__(self):
        _check_common(self)
        _positive(self, "widths", "gru_hidden", "gru_layers", "fc_dim")
        check_config(len(self.widths) == 5, "widths take 5 conv widths: 3 shared, then 2 per branch")
        check_config(self.clip_frames == 1, "m3t_3dvgg runs its 3D convs over the window: clip_frames must be 1")
        check_config(self.normalization in NORMALIZATIONS, f"normalization must be one of {list(NORMALIZATIONS)}")
        parse_route(self.route)


def _conv3d_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3x3 conv ('same' padding, centred in time), BN, ReLU, 1x2x2 max pooling (space only; the time axis keeps
    its length)."""
    return nn.Sequential(nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm3d(out_ch),
                         nn.ReLU(inplace=True), nn.MaxPool3d((1, 2, 2), ceil_mode=True))


def _masked_blocks(blocks: nn.Sequential, x: torch.Tensor, time_mask: torch.Tensor | None) -> torch.Tensor:
    """Run (B, C, L, H, W) through ``blocks``, zeroing padded frames after each, so a real frame sees zeros beyond
    the window's end exactly as a shorter window would."""
    for block in blocks:
        x = block(x)
        if time_mask is not None:
            x = x * time_mask
    return x


class M3TBranch(nn.Module):
    """One M3T branch: 2 conv blocks -> global spatial average -> concat routed 2D features -> 2-layer bi-GRU ->
    FC + ReLU -> FC to one value per frame."""

    def __init__(self, in_ch: int, widths: Sequence[int], vector_dim: int, c: M3T3DVggConfig):
        super().__init__()
        chans = (in_ch, *widths)
        self.convs = nn.Sequential(*[_conv3d_block(a, b) for a, b in zip(chans, chans[1:])])
        self.gru = nn.GRU(chans[-1] + vector_dim, c.gru_hidden, num_layers=c.gru_layers, batch_first=True,
                          bidirectional=True, dropout=c.dropout if c.gru_layers > 1 else 0.0)
        self.fc = nn.Sequential(nn.Linear(2 * c.gru_hidden, c.fc_dim), nn.ReLU(), nn.Dropout(c.dropout),
                                nn.Linear(c.fc_dim, 1))

    def forward(self, x: torch.Tensor, vectors: list[torch.Tensor], time_mask: torch.Tensor | None,
                mask: torch.Tensor | None) -> torch.Tensor:
        h = _masked_blocks(self.convs, x, time_mask).mean(dim=(-2, -1)).transpose(1, 2)  # (B, L, C)
        h = torch.cat([h.float(), *vectors], dim=-1)
        return self.fc(run_rnn(self.gru, h, mask))  # (B, L, 1)


class M3T3DVgg(TrunkModel):
    """M3T multi-task visual network (Zhang et al., ABAW 2020), Sec. II-A and Fig. 2, trained end to end on crops.

    The window's L consecutive crops (``clip_frames`` = 1: face_clip (B, L, 1, S, S, C) -> one (B, C, L, s, s) clip,
    one crop position and flip for the whole window) go through a 3D VGG-like net: three ``shared`` conv blocks,
    then two per branch (``valence``, ``arousal``); 3x3x3 convs, BN, ReLU, spatial-only max pooling, so every frame
    keeps a 3D feature; global spatial pooling gives (B, L, C) per branch. Each branch concatenates the routed 2D
    static vector inputs (``route``), runs a 2-layer bi-GRU (packed to the real frames) and two FC layers to its
    value; ``va`` = tanh([valence, arousal]). VA only (the paper's expression loss needs an EXPR head it does not
    describe). The paper pretrains the 3D blocks on VoxCeleb2 face recognition; here they start random.
    """

    name = "m3t_3dvgg"

    def __init__(self, modality_dims: Mapping[str, Any], tasks: Sequence[TaskSpec], config: M3T3DVggConfig):
        super().__init__(modality_dims, tasks, config)
        c = config
        if self.task_names != ("va",) or self.tasks[0].n_outputs != 2:
            raise ValueError(f"m3t_3dvgg predicts valence and arousal only (task va); got {list(self.task_names)}")
        _, _, channels = self.clip_dims()
        routes = {branch: [] for branch in M3T_BRANCHES}
        for branch, name in parse_route(c.route):
            if name not in self.vector_modalities:
                raise ValueError(f"m3t_3dvgg route {branch}={name}: no vector input {name!r}; the vector inputs are "
                                 f"{list(self.vector_modalities)}")
            routes[branch].append(name)
        if not c.route:
            routes = {branch: list(self.vector_modalities) for branch in M3T_BRANCHES}
        self.routes = {branch: tuple(names) for branch, names in routes.items()}
        self.clip_input = ClipInput(channels, c.crop_fraction, c.normalization, channels_last=c.channels_last)
        chans = (channels, *c.widths[:3])
        self.shared = nn.Sequential(*[_conv3d_block(a, b) for a, b in zip(chans, chans[1:])])
        for branch in M3T_BRANCHES:
            dim = sum(self.modality_dims[name] for name in self.routes[branch])
            self.add_module(branch, M3TBranch(chans[-1], c.widths[3:], dim, c))

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        clip = self.input(inputs, "face_clip")[:, :, 0]  # (B, L, S, S, C)
        mask = self.real_frames(frame_mask, clip)
        valid = inputs.get("face_clip_valid")
        valid = None if valid is None else valid[:, :, 0].to(clip.device, torch.bool)
        if mask is not None:
            valid = mask if valid is None else valid & mask
        time_mask = None if mask is None else mask.view(mask.shape[0], 1, mask.shape[1], 1, 1).float()
        x = _masked_blocks(self.shared, self.clip_input(clip, valid), time_mask)
        values = [getattr(self, branch)(x, self.vectors(inputs, self.routes[branch], mask), time_mask, mask)
                  for branch in M3T_BRANCHES]
        return {"va": torch.tanh(torch.cat(values, dim=-1))}


# ----------------------------------------------------------------------------------------------------------------------
# Seed 001: TDNN audio + visual features -> transformer
# ----------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TdnnTransformerConfig:
    """Hyperparameters of :class:`TdnnTransformer` (seed 001, Sec. 3.2, 4.2).

    The TDNN is the x-vector one (Snyder et al. 2018, seed 001's [17]): frame layers with contexts 5, 3, 3, 1, 1 at
    dilations 1, 2, 3, 1, 1 (receptive field 15 rows = 75 ms at 5 ms), widths 512 x 4 and 1500, mean + std statistics
    pooling, a linear embedding of ``tdnn_dim`` = 512 ("the output dimension of TDNN is set to 512"). Its input per
    frame: ``spectrogram_rows`` = 41 rows of ``mel64_fine`` (64 bands, 10 ms window, 5 ms stride: 200 rows/s), i.e.
    0.2 s centred on the frame -- a 30 fps frame interval (6.7 rows) plus the TDNN's context either side with margin
    (the paper does not say how the audio is cut per frame). Transformer: as :class:`TransformerSeed001Config`.
    """

    tdnn_channels: tuple[int, ...] = (512, 512, 512, 512, 1500)
    tdnn_kernels: tuple[int, ...] = (5, 3, 3, 1, 1)
    tdnn_dilations: tuple[int, ...] = (1, 2, 3, 1, 1)
    tdnn_dim: int = 512
    d_model: int = 512
    num_layers: int = 1                 # "the number of encoder layers from the transformer is set to 1"
    num_heads: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    positional_encoding: bool = True
    clip_frames: int = 1                # no face clip (vector visual features, e.g. iresnet)
    clip_dilation: int = 1
    spectrogram_rows: int = 41          # 0.2 s of mel64_fine centred on the frame

    def __post_init__(self):
        _check_common(self)
        _positive(self, "tdnn_channels", "tdnn_kernels", "tdnn_dilations", "tdnn_dim", "d_model", "num_layers",
                  "num_heads", "dim_feedforward", "spectrogram_rows")
        check_config(len(self.tdnn_channels) == len(self.tdnn_kernels) == len(self.tdnn_dilations),
                     "tdnn_channels, tdnn_kernels and tdnn_dilations need one entry per layer")
        check_config(self.d_model % self.num_heads == 0, "d_model must be divisible by num_heads")
        check_config(self.spectrogram_rows >= self.receptive_rows,
                     f"spectrogram_rows must cover the TDNN's {self.receptive_rows}-row receptive field")

    @property
    def receptive_rows(self) -> int:
        return 1 + sum((k - 1) * d for k, d in zip(self.tdnn_kernels, self.tdnn_dilations))


class Tdnn(nn.Module):
    """x-vector TDNN over (N, R, F) rows: per layer Conv1d (context k, dilation d, no padding), ReLU, BatchNorm1d;
    mean + std pooling over the output rows whose receptive field holds valid rows only (all rows when none does);
    ``embedding`` Linear -> (N, out_features)."""

    def __init__(self, bands: int, channels: Sequence[int], kernels: Sequence[int], dilations: Sequence[int],
                 out_features: int):
        super().__init__()
        chans = (bands, *channels)
        self.geometry = tuple(zip(kernels, dilations))
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, k, dilation=d), nn.ReLU(), nn.BatchNorm1d(b))
            for a, b, (k, d) in zip(chans, chans[1:], self.geometry))
        self.embedding = nn.Linear(2 * chans[-1], out_features)
        self.out_features = out_features

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        h = x.transpose(1, 2)  # (N, F, R)
        invalid = None if valid is None else (~valid).float().unsqueeze(1)
        for layer, (k, d) in zip(self.layers, self.geometry):
            h = layer(h)
            if invalid is not None and k > 1:
                invalid = nn.functional.max_pool1d(invalid, k, stride=1, dilation=d)
        h = h.float()
        w = torch.ones_like(h[:, :1]) if invalid is None else 1.0 - invalid
        w = torch.where(w.sum(-1, keepdim=True) > 0, w, torch.ones_like(w))
        count = w.sum(-1)
        mean = (h * w).sum(-1) / count
        std = ((((h - mean.unsqueeze(-1)) ** 2) * w).sum(-1) / count).clamp(min=1e-6).sqrt()
        return self.embedding(torch.cat([mean, std], dim=-1))


class TdnnTransformer(TrunkModel):
    """Seed 001 (multi-modal multi-task AU + EXPR, ABAW 2021), Sec. 3.2 and Fig. 2, with the audio model trained end
    to end: ``tdnn`` (:class:`Tdnn`, after :class:`SpectrogramNorm`) turns each frame's fine log-Mel rows into a
    512-d audio feature; it is concatenated with the vector inputs (the visual features, e.g. ``iresnet``), a
    ``fusion`` linear layer maps to d_model, sinusoidal positions are added, a 1-layer transformer ``encoder`` (key
    padding mask) runs over the window and ``heads`` predicts each frame. Any ``face_clip`` input is ignored.
    """

    name = "tdnn_transformer"

    def __init__(self, modality_dims: Mapping[str, Any], tasks: Sequence[TaskSpec], config: TdnnTransformerConfig):
        super().__init__(modality_dims, tasks, config)
        c = config
        _, bands = self.spectrogram_dims()
        self.spectrogram_norm = SpectrogramNorm(bands)
        self.tdnn = Tdnn(bands, c.tdnn_channels, c.tdnn_kernels, c.tdnn_dilations, c.tdnn_dim)
        fused = c.tdnn_dim + sum(self.modality_dims[name] for name in self.vector_modalities)
        self.fusion = nn.Linear(fused, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = transformer_encoder(c.d_model, c.num_heads, c.dim_feedforward, c.dropout, c.num_layers)
        self.heads = TaskHeads(c.d_model, self.tasks)

    def _audio(self, spectrogram: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        return self.tdnn(self.spectrogram_norm(spectrogram, valid), valid)

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        spectrogram = self.input(inputs, "spectrogram")
        mask = self.real_frames(frame_mask, spectrogram)
        audio = run_per_frame(self._audio, [spectrogram, inputs.get("spectrogram_valid")], mask)
        h = self.fusion(torch.cat([audio, *self.vectors(inputs, self.vector_modalities, mask)], dim=-1))
        if self.config.positional_encoding:
            h = h + sinusoidal_positions(h.shape[1], h.shape[2], h.device, h.dtype)
        return self.heads(encode_sequence(self.encoder, self.dropout(h), mask))


# ----------------------------------------------------------------------------------------------------------------------
# Per-frame CNN + temporal head
# ----------------------------------------------------------------------------------------------------------------------

FRAME_BACKBONES = ("resnet50", "resnet18", "iresnet50", "iresnet100")
FRAME_HEADS = ("tcn", "gru", "transformer")


@dataclass(frozen=True)
class FrameCnnConfig:
    """Hyperparameters of :class:`FrameCnn`.

    ``backbone``: ``resnet50`` (ABAW3's visual branch, Sec. 2: ResNet-50, there pretrained on MS-Celeb-1M and FER+;
    here torchvision's ImageNet weights, ``pretrained``), ``resnet18``, or ``iresnet50``/``iresnet100`` (seed 001,
    Sec. 4.2: insightface's IResNet100, ``pretrained`` = an arcface_torch ``backbone.pth``; loads at ``widths`` =
    default, ``embedding_dim`` = 512 and 112 px crops). ``normalization`` "" = the backbone's own (ImageNet for the
    ResNets, [-1, 1] for the IResNets). ``head``: ``tcn`` (ABAW3's causal TCN: kernel 5, widths 256, 256, 128, 128,
    dropout 0.1, from its released code), ``gru`` (bi-GRU, ``head_layers`` x ``head_dim``) or ``transformer``
    (``head_layers`` encoder layers of width ``head_dim``, ``head_heads`` heads, feed-forward 4 x ``head_dim``).
    """

    backbone: str = "resnet50"
    widths: tuple[int, ...] = (64, 128, 256, 512)
    pretrained: str = ""
    embedding_dim: int = 512            # ABAW3's visual features are 512-d; IResNet's embedding
    head: str = "tcn"
    tcn_channels: tuple[int, ...] = (256, 256, 128, 128)
    tcn_kernel_size: int = 5
    head_dim: int = 256
    head_layers: int = 2
    head_heads: int = 4
    dropout: float = 0.1
    clip_frames: int = 1
    clip_dilation: int = 1
    spectrogram_rows: int = 0
    crop_fraction: float = 112 / 128
    normalization: str = ""
    channels_last: bool = True

    def __post_init__(self):
        _check_common(self)
        check_config(self.backbone in FRAME_BACKBONES, f"backbone must be one of {FRAME_BACKBONES}")
        check_config(self.head in FRAME_HEADS, f"head must be one of {FRAME_HEADS}")
        _positive(self, "widths", "embedding_dim", "tcn_channels", "tcn_kernel_size", "head_dim", "head_layers",
                  "head_heads")
        check_config(len(self.widths) == 4, "widths take 4 stage widths")
        check_config(self.head_dim % self.head_heads == 0, "head_dim must be divisible by head_heads")
        check_config(self.clip_frames == 1, "frame_cnn runs on single crops: clip_frames must be 1")
        check_config(self.normalization in ("", *NORMALIZATIONS), f"normalization must be '' or one of "
                                                                 f"{list(NORMALIZATIONS)}")


class TemporalHead(nn.Module):
    """(B, L, D) -> (B, L, out_dim) over a window: causal TCN, packed bi-GRU, or transformer encoder with positions
    and key padding mask (see :class:`FrameCnnConfig`)."""

    def __init__(self, in_dim: int, c: FrameCnnConfig):
        super().__init__()
        self.kind = c.head
        if c.head == "tcn":
            self.net = TemporalConvNet(in_dim, c.tcn_channels, c.tcn_kernel_size, c.dropout, weight_norm=True)
            self.out_dim = self.net.out_dim
        elif c.head == "gru":
            self.net = nn.GRU(in_dim, c.head_dim, num_layers=c.head_layers, batch_first=True, bidirectional=True,
                              dropout=c.dropout if c.head_layers > 1 else 0.0)
            self.out_dim = 2 * c.head_dim
        else:
            self.proj = nn.Linear(in_dim, c.head_dim)
            self.net = transformer_encoder(c.head_dim, c.head_heads, 4 * c.head_dim, c.dropout, c.head_layers)
            self.out_dim = c.head_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "tcn":
            return self.net(x)
        if self.kind == "gru":
            return run_rnn(self.net, x, mask)
        h = self.proj(x)
        return encode_sequence(self.net, h + sinusoidal_positions(h.shape[1], h.shape[2], h.device, h.dtype), mask)


class FrameCnn(TrunkModel):
    """A per-frame 2D CNN fine-tuned on the crops + a temporal head: ABAW3's visual branch (Zhang et al., seed 003,
    Sec. 2: ResNet-50 spatial encoding of each frame -> TCN) and seed 001's IResNet visual model (Sec. 3.1, 4.2).

    Each real frame's crop (face_clip with ``clip_frames`` = 1; C = 3, or 4 with the mask channel, which widens the
    first conv) goes through :class:`ClipInput` and ``backbone``; ``projection`` (Linear, Identity for the IResNets,
    whose embedding already has ``embedding_dim``) gives (B, L, embedding_dim) visual features, concatenated with any
    vector inputs; ``head`` (:class:`TemporalHead`) runs over the window; ``heads`` predicts VA, EXPR and AU.
    """

    name = "frame_cnn"

    def __init__(self, modality_dims: Mapping[str, Any], tasks: Sequence[TaskSpec], config: FrameCnnConfig):
        super().__init__(modality_dims, tasks, config)
        c = config
        _, size, channels = self.clip_dims()
        arcface = c.backbone.startswith("iresnet")
        self.clip_input = ClipInput(channels, c.crop_fraction, c.normalization or ("symmetric" if arcface else
                                                                                   "imagenet"))
        depth = int(c.backbone.removeprefix("iresnet").removeprefix("resnet"))
        if arcface:
            self.backbone = iresnet(depth, c.widths, channels, c.embedding_dim, crop_size(size, c.crop_fraction))
            self.projection = nn.Identity()
            hint, drop = ARCFACE_FILE, ()
        else:
            self.backbone = image_resnet(depth, c.widths, channels)
            self.projection = nn.Linear(self.backbone.out_features, c.embedding_dim)
            file = RESNET50_FILE if depth == 50 else RESNET18_FILE
            hint, drop = f"torchvision {file}, {TORCHVISION_URL}{file}", ("fc.",)
        self.load_or_log(self.backbone, c.pretrained, "backbone", "pretrained", hint, drop_prefixes=drop)
        self.dropout = nn.Dropout(c.dropout)
        in_dim = c.embedding_dim + sum(self.modality_dims[name] for name in self.vector_modalities)
        self.head = TemporalHead(in_dim, c)
        self.heads = TaskHeads(self.head.out_dim, self.tasks)

    def _frames(self, crops: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        x = channels_last_on_cuda(self.clip_input(crops, valid)[:, :, 0], self.config.channels_last)  # (N, C, s, s)
        return self.projection(self.backbone(x))

    def forward(self, inputs: Mapping[str, torch.Tensor],
                frame_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        clip = self.input(inputs, "face_clip")
        mask = self.real_frames(frame_mask, clip)
        visual = run_per_frame(self._frames, [clip, inputs.get("face_clip_valid")], mask)
        h = torch.cat([self.dropout(visual.float()), *self.vectors(inputs, self.vector_modalities, mask)], dim=-1)
        return self.heads(self.head(h, mask))


TRUNK_MODELS: dict[str, tuple[type, type, tuple[str, ...], str]] = {
    "tsav": (TsavConfig, Tsav, ("va", "expr", "au"),
             "TSAV (ABAW 2020, seed 004) end to end: R(2+1)D-18 on 8-frame clips at dilation 6 (RGB + mask) + "
             "ResNet-18 on 10 s sub-spectrograms -> concat -> FC"),
    "m3t_3dvgg": (M3T3DVggConfig, M3T3DVgg, ("va",),
                  "M3T visual network (ABAW 2020, seed 000): 3D VGG over the window's crops (3 shared + 2 per-branch "
                  "blocks) + routed 2D features -> 2-layer bi-GRU 1024 per branch -> FC"),
    "tdnn_transformer": (TdnnTransformerConfig, TdnnTransformer, ("va", "expr", "au"),
                         "AU+EXPR multitask (ABAW 2021, seed 001): x-vector TDNN on 5 ms log-Mel rows + visual "
                         "features -> fusion -> 1-layer transformer encoder -> FC"),
    "frame_cnn": (FrameCnnConfig, FrameCnn, ("va", "expr", "au"),
                  "per-frame CNN fine-tuned on crops (ABAW3 seed 003 ResNet-50 / seed 001 IResNet) -> TCN, bi-GRU or "
                  "transformer -> FC"),
}
"""name -> (config class, module class, supported tasks, one-line description) for the model registry."""
