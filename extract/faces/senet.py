"""``senet``: pooled features of a squeeze-and-excitation ResNet (Hu et al. 2018) face model, weights the user brings.

M3T takes 512-d average-pooling features of an expression SENet-101; the public VGGFace2 SENet-50 (Cao et al. 2018,
``senet50_ft_weight.pkl`` from VGGFace2-pytorch) gives 2048-d. The network is built from the checkpoint itself: blocks
per stage, widths and the SE reduction are read from the parameter shapes, so SENet-50, SENet-101 and narrower
variants with VGGFace2-pytorch's parameter names load strictly (a missing or surplus tensor is an error naming the
file). Input as VGGFace2 trained it: 224 x 224 BGR, mean pixel (B, G, R) = (91.4953, 103.8827, 131.0912)
subtracted, no scaling. Arrays: ``senet`` (T, C) the globally average-pooled last stage (C = 2048 for SENet-50).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from extract.faces.embedding import FaceInputSpec, TorchFaceEmbedding
from extract.registry import register
from extract.sources import SENET50_LICENSE, SENET50_LICENSE_URL
from extract.weights import UserWeights
from features_store.schema import ArraySchema

VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
SENET_INPUT = FaceInputSpec(size_px=224, colour_order="BGR", mean=VGGFACE2_MEAN_BGR, std=(1.0, 1.0, 1.0))


class SeBottleneck(nn.Module):
    """VGGFace2-pytorch's SE bottleneck: 1x1 (with the stride, Caffe style), 3x3, 1x1 expand, then the SE gate
    (``conv4`` squeeze, ``conv5`` excite, both 1x1 with bias) on the residual branch before the shortcut is added."""

    def __init__(self, in_channels: int, planes: int, out_channels: int, squeeze_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.conv4 = nn.Conv2d(out_channels, squeeze_channels, 1)
        self.conv5 = nn.Conv2d(squeeze_channels, out_channels, 1)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = functional.relu(self.bn1(self.conv1(x)))
        out = functional.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        gate = torch.sigmoid(self.conv5(functional.relu(self.conv4(functional.adaptive_avg_pool2d(out, 1)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return functional.relu(out * gate + shortcut)


@dataclass(frozen=True)
class SenetShape:
    """What varies between SENets: stem width, then per stage the blocks, bottleneck width and output width, and the
    SE squeeze width of each stage; ``n_classes`` of the ``fc`` head when the checkpoint has one."""

    stem_channels: int
    blocks: tuple[int, ...]
    planes: tuple[int, ...]
    out_channels: tuple[int, ...]
    squeeze_channels: tuple[int, ...]
    n_classes: int | None = None

    @classmethod
    def of(cls, state_dict: dict[str, Any]) -> SenetShape:
        """The shape a VGGFace2-pytorch-style state dict describes; KeyError when it is not one."""
        stages = sorted({int(m.group(1)) for key in state_dict if (m := re.match(r"layer(\d+)\.", key))})
        if not stages:
            raise KeyError("no layer<k>.<block> parameters: not a SENet state dict")
        blocks = tuple(len({key.split(".")[1] for key in state_dict if key.startswith(f"layer{s}.")}) for s in stages)
        first = [f"layer{s}.0" for s in stages]
        fc = state_dict.get("fc.weight")
        return cls(stem_channels=int(state_dict["conv1.weight"].shape[0]), blocks=blocks,
                   planes=tuple(int(state_dict[f"{b}.conv1.weight"].shape[0]) for b in first),
                   out_channels=tuple(int(state_dict[f"{b}.conv3.weight"].shape[0]) for b in first),
                   squeeze_channels=tuple(int(state_dict[f"{b}.conv4.weight"].shape[0]) for b in first),
                   n_classes=None if fc is None else int(fc.shape[0]))


class SeNet(nn.Module):
    """SE-ResNet with VGGFace2-pytorch's parameter names; ``forward`` returns the pooled last stage (N, C)."""

    def __init__(self, shape: SenetShape):
        super().__init__()
        self.conv1 = nn.Conv2d(3, shape.stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(shape.stem_channels)
        channels = shape.stem_channels
        for stage, (n_blocks, planes, out, squeeze) in enumerate(zip(shape.blocks, shape.planes, shape.out_channels,
                                                                     shape.squeeze_channels), start=1):
            blocks = []
            for index in range(n_blocks):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append(SeBottleneck(channels, planes, out, squeeze, stride))
                channels = out
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.n_stages = len(shape.blocks)
        self.fc = nn.Linear(channels, shape.n_classes) if shape.n_classes else None  # loaded, not used

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.relu(self.bn1(self.conv1(x)))
        x = functional.max_pool2d(x, 3, stride=2, padding=0, ceil_mode=True)
        for stage in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return functional.adaptive_avg_pool2d(x, 1).flatten(1)


@dataclass(frozen=True)
class SenetConfig:
    """The weights file (looked up in the models search path) and faces per batch."""

    weights_file: str = "senet50_ft_weight.pkl"
    batch_faces: int = 32


@register
class Senet(TorchFaceEmbedding):
    """Pooled SENet features per frame (see the module docstring)."""

    name = "senet"
    version = "1"
    config_class = SenetConfig
    offline = False
    libraries = ("numpy", "torch", "Pillow")
    input_spec = SENET_INPUT

    def weights(self) -> dict:
        return {"model": UserWeights.published(
            self.config.weights_file, source="VGGFace2-pytorch (github.com/cydonia999/VGGFace2-pytorch, SENet-50 "
            "'senet50_ft'), or your own SE-ResNet with its parameter names (.pkl of numpy arrays or torch state dict)",
            license=SENET50_LICENSE, non_commercial=True, license_url=SENET50_LICENSE_URL)}

    def network(self, state_dict: dict[str, Any]) -> SeNet:
        model = SeNet(SenetShape.of(state_dict))
        model.load_state_dict(state_dict, strict=True)
        return model

    def outputs(self, model: SeNet, faces: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"senet": model(faces)}

    def output_schemas(self) -> dict[str, ArraySchema]:
        return {"senet": ArraySchema(description="SENet last stage, global average pooled")}

