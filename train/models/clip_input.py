"""Face clips as the trunks take them: uint8 crops (channels last, as stored) -> cropped, augmented, normalised float.

The data side delivers uint8 ``(N, K, S, S, C)`` clips (K frames of S px crops; C = 3 RGB, or 4 with TSAV's landmark
mask as the 4th channel) and :class:`ClipInput` makes them ``(N, C, K, s, s)`` float on the model's device, with
s = round(S * crop_fraction):

- M3T (seed 000, Sec. III-A "Data augmentation"): "a random 112x112 crop at the same position for each frame, and
  random horizontal flipping to the entire sequence", a central 112 crop at evaluation, of 128 px crops; inputs
  "normalized to [-1, 1]".
- TSAV (seed 004, Sec. V-A): "random horizontal flip, and small random changes to hue, saturation and lightness";
  112 px clips. Seed 001 (Sec. 4.2): the same plus "small random crop".

While training: one crop position per clip (the same for its K frames), a horizontal flip of the whole clip (mask
channel included) with probability 0.5, and per clip colour changes on the RGB channels only, as one 3x3 matrix in
YIQ space: hue = rotation of the (I, Q) chroma plane by up to +-``hue`` of the full circle (an approximation of an
HSV hue shift that needs no HSV conversion), saturation = scaling of (I, Q) by a factor in [1 - s, 1 + s] (a blend
with the grey of the same luma Y), lightness = scaling of all three channels by a factor in [1 - l, 1 + l]; the result
is clipped to [0, 1]. In eval mode: the centre crop, nothing random.

Normalisation: RGB / 255 then ``(x - mean) / std`` of the named preset (:data:`NORMALIZATIONS`: ImageNet for
torchvision's image ResNets, Kinetics-400 for its video ResNets, ``symmetric`` = [-1, 1] for M3T and insightface's
arcface models); the mask channel / 255 only (0..1). Frames flagged invalid (no face) become zeros after
normalisation: the "vector of zeros in lieu of the absent visual frames" of M3T (Sec. III-A), the mean image here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),     # torchvision image models
    "kinetics": ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),  # torchvision video models
    "symmetric": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),                # [-1, 1]: M3T; arcface_torch; ABAW3
}
"""Per-channel RGB mean and std (of pixel values in [0, 1]) of each normalisation preset."""

# NTSC RGB -> YIQ; the I and Q rows sum to zero, so grey (r = g = b) has no chroma
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.595716, -0.274453, -0.321263), (0.211456, -0.522591, 0.311135))


def crop_size(size_px: int, crop_fraction: float) -> int:
    """The side of the crop ClipInput cuts from ``size_px`` crops: round(size_px * crop_fraction), at least 1."""
    return max(1, min(size_px, round(size_px * crop_fraction)))


def channels_last_on_cuda(x: torch.Tensor, enabled: bool = True) -> torch.Tensor:
    """``x`` contiguous in ``torch.channels_last`` (4-D) or ``torch.channels_last_3d`` (5-D) when ``enabled`` and on
    CUDA, else in the default layout. cuDNN runs a convolution channels last when its input is (weights follow), the
    layout its tensor-core kernels prefer under autocast; on the CPU oneDNN spends seconds building primitives for each
    new channels-last shape, so CPU tensors stay contiguous."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    if enabled and x.is_cuda and x.dim() in formats:
        return x.contiguous(memory_format=formats[x.dim()])
    return x.contiguous()


class ClipInput(nn.Module):
    """uint8 ``(N, K, S, S, C)`` clips -> float ``(N, C, K, s, s)``; see the module docstring.

    ``channels``: C (3 = RGB, 4 = RGB + mask). ``crop_fraction``: s / S (112/128: M3T's and TSAV's 112 px of 128 px
    crops). ``hue`` (fraction of the hue circle), ``saturation`` and ``lightness`` (relative factor ranges): the
    colour changes while training; ``flip_probability``: of the horizontal flip. ``channels_last``: the output in
    ``torch.channels_last_3d`` on CUDA (see :func:`channels_last_on_cuda`).
    """

    def __init__(self, channels: int = 3, crop_fraction: float = 112 / 128, normalization: str = "imagenet",
                 hue: float = 0.02, saturation: float = 0.1, lightness: float = 0.1, flip_probability: float = 0.5,
                 channels_last: bool = False):
        super().__init__()
        if channels not in (3, 4):
            raise ValueError(f"ClipInput takes 3 (RGB) or 4 (RGB + mask) channels, got {channels}")
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must lie in (0, 1], got {crop_fraction}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; known: {', '.join(NORMALIZATIONS)}")
        if not (0 <= hue <= 0.5 and 0 <= saturation < 1 and 0 <= lightness < 1 and 0 <= flip_probability <= 1):
            raise ValueError("hue must lie in [0, 0.5], saturation and lightness in [0, 1), flip_probability in [0, 1]")
        self.channels, self.crop_fraction, self.normalization = channels, crop_fraction, normalization
        self.hue, self.saturation, self.lightness, self.flip_probability = hue, saturation, lightness, flip_probability
        self.channels_last = channels_last
        mean, std = NORMALIZATIONS[normalization]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1), persistent=False)
        to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
        self.register_buffer("rgb_to_yiq", to_yiq.float(), persistent=False)
        self.register_buffer("yiq_to_rgb", torch.linalg.inv(to_yiq).float(), persistent=False)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, crop_fraction={self.crop_fraction:.4g}, "
                f"normalization={self.normalization!r}")

    def forward(self, clip: torch.Tensor, valid: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``clip`` uint8 (N, K, S, S, C); ``valid`` (N, K) bool (False: no face, zeroed); ``generator``: a CPU
        generator for the random choices (default: torch's global one). Returns float32 (N, C, K, s, s)."""
        if clip.dim() != 5 or clip.shape[-1] != self.channels or clip.shape[2] != clip.shape[3]:
            raise ValueError(f"ClipInput expects (N, K, S, S, {self.channels}) clips, got {tuple(clip.shape)}")
        n, k, size = clip.shape[0], clip.shape[1], clip.shape[2]
        side = crop_size(size, self.crop_fraction)
        augment = self.training
        if augment and side < size:
            offsets = torch.randint(0, size - side + 1, (2, n), generator=generator).to(clip.device)
            span = torch.arange(side, device=clip.device)
            rows, cols = offsets[0, :, None] + span, offsets[1, :, None] + span  # (N, s)
            clip = clip[torch.arange(n, device=clip.device)[:, None, None, None],
                        torch.arange(k, device=clip.device)[None, :, None, None],
                        rows[:, None, :, None], cols[:, None, None, :]]
        else:
            top = (size - side) // 2
            clip = clip[:, :, top:top + side, top:top + side]
        x = clip.permute(0, 4, 1, 2, 3).float().div_(255.0)  # (N, C, K, s, s)
        if augment:
            x = self._augment(x, generator)
        rgb = (x[:, :3] - self.mean) / self.std
        x = torch.cat([rgb, x[:, 3:]], dim=1) if self.channels == 4 else rgb
        if valid is not None:
            x = x * valid.to(device=x.device, dtype=x.dtype).view(n, 1, k, 1, 1)
        return channels_last_on_cuda(x, self.channels_last)

    def _augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        draws = torch.rand(4, n, generator=generator, dtype=torch.float64).to(x.device, torch.float32)
        flip = draws[0] < self.flip_probability
        x = torch.where(flip.view(n, 1, 1, 1, 1), x.flip(-1), x)
        if self.hue == 0 and self.saturation == 0 and self.lightness == 0:
            return x
        angle = (2 * draws[1] - 1) * (self.hue * 2 * math.pi)
        chroma = 1 + (2 * draws[2] - 1) * self.saturation
        light = 1 + (2 * draws[3] - 1) * self.lightness
        cos, sin = chroma * torch.cos(angle), chroma * torch.sin(angle)
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        yiq_change = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1),
                                  torch.stack([zero, sin, cos], -1)], -2)  # (N, 3, 3)
        matrix = light.view(n, 1, 1) * (self.yiq_to_rgb @ yiq_change @ self.rgb_to_yiq)
        rgb = torch.einsum("nij,njkhw->nikhw", matrix, x[:, :3]).clamp_(0.0, 1.0)
        return torch.cat([rgb, x[:, 3:]], dim=1)
