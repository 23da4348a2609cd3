"""Convolutional trunks with a width parameter whose parameter names and shapes equal torchvision's (and insightface's)
at the default widths, so their pretrained state dicts load with ``strict=True`` (after dropping the classifier).

- :func:`video_resnet`: R(2+1)D-18 (Tran et al., CVPR 2018) as ``torchvision.models.video.r2plus1d_18``, TSAV's
  visual model (seed 004, Sec. III-C): (N, C, K, H, W) -> (N, widths[-1]).
- :func:`image_resnet`: ResNet-18/50 as ``torchvision.models.resnet18/50``, TSAV's aural model (Sec. III-C) and
  ABAW3's visual backbone (seed 003, Sec. 2): (N, C, H, W) -> (N, out_features).
- :func:`iresnet`: insightface arcface_torch's IResNet-50/100 (``recognition/arcface_torch/backbones/iresnet.py``),
  seed 001's visual backbone (Sec. 4.2): (N, C, input_px, input_px) -> (N, embedding).
- :func:`load_pretrained`: a torch.hub-style ``name-<sha256 prefix>.pth`` checked, its first convolution widened
  (TSAV's 4th, mask channel) or narrowed (the 1-channel spectrogram), loaded strictly; returns the file's sha256.

The residual blocks are torchvision's own (``torchvision.models.resnet.BasicBlock/Bottleneck``,
``torchvision.models.video.resnet.BasicBlock`` with ``Conv2Plus1D``); only the stems and stage wiring, which
torchvision hard-codes to 64 px widths, are written here. Every trunk has ``fc = nn.Identity()`` (so a torchvision
state dict minus ``fc.*`` loads) and ``out_features``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock as ImageBasicBlock
from torchvision.models.resnet import Bottleneck as ImageBottleneck
from torchvision.models.video.resnet import BasicBlock as VideoBasicBlock
from torchvision.models.video.resnet import Conv2Plus1D

from features_store.common import file_sha256, models_search_path
from features_store.errors import AffectsyncError

DEFAULT_WIDTHS = (64, 128, 256, 512)
IMAGE_RESNET_LAYERS = {18: (ImageBasicBlock, (2, 2, 2, 2)), 50: (ImageBottleneck, (3, 4, 6, 3))}
IRESNET_LAYERS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
HUB_HASH = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
"""torch.hub's file naming: ``name-<first hex digits of the file's sha256>.<ext>`` (torchvision uses 8)."""


def _check_widths(widths: Sequence[int], n: int = 4) -> tuple[int, ...]:
    widths = tuple(int(w) for w in widths)
    if len(widths) != n or any(w <= 0 for w in widths):
        raise ValueError(f"widths must be {n} positive channel counts, got {widths}")
    return widths


def _downsample(conv: type[nn.Module], norm: type[nn.Module], in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """torchvision's projection shortcut: 1x1(x1) conv at the block's stride + batch norm (keys ``.0``, ``.1``)."""
    return nn.Sequential(conv(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), norm(out_ch))


def _stage(block: Callable[..., nn.Module], expansion: int, in_ch: int, planes: int, blocks: int, stride: int,
           downsample: Callable[[int, int, int], nn.Module]) -> tuple[nn.Sequential, int]:
    """torchvision's ``_make_layer``: the first block strides (and projects the shortcut when the shape changes)."""
    out_ch = planes * expansion
    shortcut = downsample(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else None
    layers = [block(in_ch, planes, stride=stride, downsample=shortcut)]
    layers += [block(out_ch, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), out_ch


def _add_stages(module: nn.Module, block: Callable[..., nn.Module], expansion: int, widths: Sequence[int],
                layers: Sequence[int], downsample: Callable[[int, int, int], nn.Module], first_stride: int) -> int:
    """``layer1``..``layerN`` of ``module`` (:func:`_stage` each; the first strides ``first_stride``, the others 2);
    returns the last stage's output channels."""
    in_ch = widths[0]
    for i, (planes, blocks) in enumerate(zip(widths, layers)):
        stage, in_ch = _stage(block, expansion, in_ch, planes, blocks, first_stride if i == 0 else 2, downsample)
        module.add_module(f"layer{i + 1}", stage)
    return in_ch


def _init_resnet(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: He (fan_out) convolutions, unit batch norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VideoResNet(nn.Module):
    """R(2+1)D with ``torchvision.models.video.VideoResNet``'s names: ``stem`` (R2Plus1dStem layout: (1, 7, 7)
    spatial conv to ``round(45 * widths[0] / 64)`` channels, BN, ReLU, (3, 1, 1) temporal conv to widths[0], BN,
    ReLU), ``layer1``..``layer4`` of torchvision's video BasicBlock with Conv2Plus1D (stride 1, 2, 2, 2 in space and
    time), global average pooling, ``fc`` = Identity. (N, C, K, H, W) -> (N, widths[-1])."""

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS, layers: Sequence[int] = (2, 2, 2, 2),
                 in_channels: int = 3):
        super().__init__()
        widths = _check_widths(widths)
        mid = max(1, round(45 * widths[0] / 64))
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, widths[0], (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True))
        block = partial(VideoBasicBlock, conv_builder=Conv2Plus1D)
        in_ch = _add_stages(self, block, VideoBasicBlock.expansion, widths, layers,
                            partial(_downsample, nn.Conv3d, nn.BatchNorm3d), first_stride=1)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Identity()
        self.in_channels, self.out_features = in_channels, in_ch
        _init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class ImageResNet(nn.Module):
    """ResNet with ``torchvision.models.ResNet``'s names: ``conv1`` (7x7 stride 2), ``bn1``, ``relu``, ``maxpool``,
    ``layer1``..``layer4`` (torchvision's BasicBlock or Bottleneck), ``avgpool``, ``fc`` = Identity.
    (N, C, H, W) -> (N, widths[-1] * expansion)."""

    def __init__(self, block: type[ImageBasicBlock | ImageBottleneck], layers: Sequence[int],
                 widths: Sequence[int] = DEFAULT_WIDTHS, in_channels: int = 3):
        super().__init__()
        widths = _check_widths(widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = _add_stages(self, block, block.expansion, widths, layers,
                            partial(_downsample, nn.Conv2d, nn.BatchNorm2d), first_stride=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()
        self.in_channels, self.out_features = in_channels, in_ch
        _init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class IBasicBlock(nn.Module):
    """arcface_torch's pre-activation block: BN, 3x3 conv, BN, PReLU, 3x3 conv (strided), BN, + shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.conv1 = nn.Conv2d(in_ch, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """insightface arcface_torch's IResNet with its names: ``conv1`` (3x3 stride 1), ``bn1``, ``prelu``,
    ``layer1``..``layer4`` of :class:`IBasicBlock` (each stage strides 2), ``bn2``, ``dropout``, ``fc`` (flattened
    widths[-1] x side x side map -> ``embedding``; side = 7 at 112 px), ``features`` (BatchNorm1d with its scale fixed
    at 1, as there). (N, C, input_px, input_px) -> (N, embedding)."""

    def __init__(self, layers: Sequence[int], widths: Sequence[int] = DEFAULT_WIDTHS, in_channels: int = 3,
                 embedding: int = 512, input_px: int = 112, dropout: float = 0.0):
        super().__init__()
        widths = _check_widths(widths)
        if input_px < 1 or embedding < 1:
            raise ValueError(f"input_px and embedding must be positive, got {input_px}, {embedding}")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-5)
        self.prelu = nn.PReLU(widths[0])
        in_ch = _add_stages(self, IBasicBlock, 1, widths, layers, partial(_downsample, nn.Conv2d, nn.BatchNorm2d),
                            first_stride=2)
        side = input_px
        for _ in layers:
            side = (side + 1) // 2  # every stage: 3x3, padding 1, stride 2
        self.bn2 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch * side * side, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad = False
        self.in_channels, self.input_px, self.out_features = in_channels, input_px, embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_px, self.input_px):
            raise ValueError(f"IResNet was built for {self.input_px} px inputs, got {tuple(x.shape[-2:])}")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.bn2(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        return self.features(self.fc(self.dropout(x.flatten(1))))


def video_resnet(widths: Sequence[int] = DEFAULT_WIDTHS, layers: Sequence[int] = (2, 2, 2, 2),
                 in_channels: int = 3) -> VideoResNet:
    """R(2+1)D-18 (``torchvision.models.video.r2plus1d_18`` at the default widths, without ``fc``)."""
    return VideoResNet(widths, layers, in_channels)


def image_resnet(depth: int = 18, widths: Sequence[int] = DEFAULT_WIDTHS, in_channels: int = 3) -> ImageResNet:
    """ResNet-18 (BasicBlock) or ResNet-50 (Bottleneck), torchvision's at the default widths, without ``fc``."""
    if depth not in IMAGE_RESNET_LAYERS:
        raise ValueError(f"image_resnet depth must be one of {sorted(IMAGE_RESNET_LAYERS)}, got {depth}")
    block, layers = IMAGE_RESNET_LAYERS[depth]
    return ImageResNet(block, layers, widths, in_channels)


def iresnet(depth: int = 100, widths: Sequence[int] = DEFAULT_WIDTHS, in_channels: int = 3, embedding: int = 512,
            input_px: int = 112, dropout: float = 0.0) -> IResNet:
    """arcface_torch's ``iresnet50``/``iresnet100`` (its ``backbone.pth`` loads at the defaults)."""
    if depth not in IRESNET_LAYERS:
        raise ValueError(f"iresnet depth must be one of {sorted(IRESNET_LAYERS)}, got {depth}")
    return IResNet(IRESNET_LAYERS[depth], widths, in_channels, embedding, input_px, dropout)


# ----------------------------------------------------------------------------------------------------------------------
# Pretrained weights
# ----------------------------------------------------------------------------------------------------------------------

def widen_first_conv(state_dict: Mapping[str, torch.Tensor], key: str, in_channels: int) -> dict[str, torch.Tensor]:
    """A copy of ``state_dict`` whose ``key`` (a conv weight, input channels on axis 1) takes ``in_channels``.

    More channels (TSAV's RGB + mask, Sec. III-C): the pretrained filters are kept and every extra channel gets the
    mean of them. One channel (TSAV's spectrogram): the sum of the pretrained filters, so the conv answers a grey
    input as the RGB net answered that grey in all three channels. Other reductions are refused (ValueError).
    """
    if key not in state_dict:
        raise ValueError(f"the state dict has no {key!r} to widen")
    out = dict(state_dict)
    weight = state_dict[key]
    have = weight.shape[1]
    if in_channels == have:
        return out
    if in_channels > have:
        extra = weight.mean(dim=1, keepdim=True).expand(-1, in_channels - have, *weight.shape[2:])
        out[key] = torch.cat([weight, extra], dim=1)
    elif in_channels == 1:
        out[key] = weight.sum(dim=1, keepdim=True)
    else:
        raise ValueError(f"{key}: cannot adapt {have} pretrained input channels to {in_channels}")
    return out


def _first_conv_key(module: nn.Module) -> str:
    for key, value in module.state_dict().items():
        if value.dim() >= 4:
            return key
    raise ValueError(f"{type(module).__name__} has no convolution weight")


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict in a checkpoint: the file itself, or its ``state_dict``/``model`` entry; ``module.`` (from
    DataParallel) stripped."""
    if isinstance(loaded, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(loaded.get(wrapper), Mapping):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    state = dict(loaded)
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


class WeightsNotFound(AffectsyncError, FileNotFoundError):
    """A pretrained trunk's weights file is not where it was looked for."""


def find_weights(path_or_name: str | Path, how_to_get: str) -> Path:
    """A weights file given as a path, or as a file name in the models search path (``$AFFECTSYNC_MODELS``, then
    ``models/``, as the extractors' weights); :class:`WeightsNotFound` naming the file, where it was looked for and
    ``how_to_get`` it."""
    given = Path(path_or_name)
    candidates = [given] + ([] if given.is_absolute() else [folder / given for folder in models_search_path()])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    match = HUB_HASH.search(given.name)
    sha256 = f" (sha256 {match.group(1)}...)" if match else ""
    raise WeightsNotFound(f"pretrained weights {path_or_name}{sha256} not found (looked in "
                            f"{', '.join(str(c.parent) for c in candidates)}); `{how_to_get}` brings it")


def load_pretrained(module: nn.Module, path: str | Path, *, drop_prefixes: Sequence[str] = ("fc.",),
                    in_channels: int | None = None, first_conv_key: str | None = None) -> str:
    """Load a pretrained state dict into ``module`` strictly, except keys under ``drop_prefixes``; return the file's
    sha256 (for provenance).

    A torch.hub-style name (``r2plus1d_18-91a641e6.pth``) must match the file's sha256 prefix (ValueError naming the
    file, the expected prefix and the actual sha256). The first convolution (``first_conv_key``; default: the
    module's first weight of 4+ dims) is adapted to ``in_channels`` (default: the module's own) by
    :func:`widen_first_conv`. ValueError on missing, unexpected or mis-shaped keys. Loaded with
    ``torch.load(weights_only=True)`` on the CPU.
    """
    path = Path(path)
    sha256 = file_sha256(path)
    match = HUB_HASH.search(path.name)
    if match and not sha256.startswith(match.group(1)):
        raise ValueError(f"{path}: its name says sha256 {match.group(1)}..., but the file's sha256 is {sha256} "
                         "(a wrong or corrupted download?)")
    state = _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)
    state = {key: value for key, value in state.items() if not key.startswith(tuple(drop_prefixes))}
    own = module.state_dict()
    key = first_conv_key or _first_conv_key(module)
    if key not in own:
        raise ValueError(f"{type(module).__name__} has no {key!r}")
    channels = own[key].shape[1] if in_channels is None else in_channels
    if channels != own[key].shape[1]:
        raise ValueError(f"in_channels={channels}, but {type(module).__name__}.{key} takes {own[key].shape[1]}")
    if key in state:
        state = widen_first_conv(state, key, channels)
    missing = [k for k in own if k not in state and not k.startswith(tuple(drop_prefixes))]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in state
              if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{path} does not fit {type(module).__name__}: missing {missing[:8]} ({len(missing)}), "
                         f"unexpected {unexpected[:8]} ({len(unexpected)}), shapes {shapes[:8]} ({len(shapes)})")
    module.load_state_dict(state, strict=False)
    return sha256
