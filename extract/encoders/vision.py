"""``hf_vision:<name>``: any transformers image encoder on the aligned face crops (ViT, DeiT, BEiT, DINOv2, CLIP's
or SigLIP's vision tower, ConvNeXt, ...), one row per frame.

The folder and its settings are found as :mod:`extract.encoders.hf_models` says. Each ``face_crop`` is resized and
normalised by the folder's own image processor (``preprocessor_config.json``: its size, crop, mean and std), the model
runs on batches of ``batch_faces`` valid faces (float16 on CUDA), and a frame's row is:

- ``output=hidden_states``: the chosen ``layers`` (pooled as ``layer_pooling`` says), each reduced over its tokens by
  ``token_pooling``: ``cls`` (the first token) or ``mean_patches`` (the mean of the patch tokens, leaving out the
  class, distillation and register tokens: those before the square grid of patches); convolutional feature maps
  (ConvNeXt) are averaged over space;
- ``output=projected``: the model's image embedding in its joint space (CLIP, SigLIP: ``image_embeds`` /
  ``get_image_features``).

Frames without a face are zeros with ``face_valid`` False. The model class is the one the folder's ``config.json``
names (``architectures``), so a projection head saved with the model is loaded with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from extract.encoders.hf_models import HfEncoder, family_member, pool_layers
from extract.faces.embedding import FaceEmbedding
from extract.registry import register_family
from extract.weights import WeightsError
from features_store.errors import UsageError
from features_store.schema import ArraySchema

TOKEN_POOLINGS = ("cls", "mean_patches")
OUTPUTS = ("hidden_states", "projected")


@dataclass(frozen=True)
class HfVisionConfig:
    """The model folder; hidden-state ``layers`` pooled by ``layer_pooling`` (mean or stack) and reduced over tokens
    by ``token_pooling`` (cls or mean_patches), or ``output=projected``; faces per batch; float16 on CUDA; where the
    folder comes from and its license."""

    model: str = ""
    layers: tuple[int, ...] = (-1,)
    layer_pooling: str = "mean"
    token_pooling: str = "cls"
    output: str = "hidden_states"
    batch_faces: int = 64
    cuda_float16: bool = True
    source: str = ("a transformers image encoder folder (e.g. huggingface.co/facebook/dinov2-small: "
                   "python -m extract models fetch hf:<repo>@<commit>)")
    license: str = "as its model card states"


def prefix_tokens(n_tokens: int, image_size_px: tuple[int, int], patch_size_px) -> int:
    """Tokens before the grid of patches (class, distillation, register tokens): the tokens less the patches of an
    (H, W) input in ``patch_size_px`` squares (197 tokens of a 224 px input in 16 px patches: 1). Without a patch
    size in the model's config, or where that does not fit the layer (hierarchical models merge patches), the grid is
    taken to be square (the face crops are)."""
    if isinstance(patch_size_px, (list, tuple)):
        patch_size_px = patch_size_px[0]
    if isinstance(patch_size_px, int) and patch_size_px > 0:
        prefix = n_tokens - (image_size_px[0] // patch_size_px) * (image_size_px[1] // patch_size_px)
        if 0 <= prefix < n_tokens:
            return prefix
    return n_tokens - math.isqrt(n_tokens) ** 2


class HfVisionEncoder(HfEncoder, FaceEmbedding):
    """A transformers image encoder's row per face (see the module docstring)."""

    name = "hf_vision"
    version = "1"
    config_class = HfVisionConfig
    family = "hf_vision"
    libraries = ("numpy", "torch", "transformers", "Pillow")

    @cached_property
    def processor(self):
        from transformers import AutoImageProcessor

        return self.load_processor(AutoImageProcessor.from_pretrained, "image processor")

    @cached_property
    def model(self):
        import transformers
        from transformers import AutoConfig

        c = self.config
        if c.output not in OUTPUTS:
            raise UsageError(f"{self.spec}.output={c.output!r}: use one of {', '.join(OUTPUTS)}")
        if c.token_pooling not in TOKEN_POOLINGS:
            raise UsageError(f"{self.spec}.token_pooling={c.token_pooling!r}: use one of {', '.join(TOKEN_POOLINGS)}")
        try:
            architectures = AutoConfig.from_pretrained(str(self.folder)).architectures or []
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{self.folder}: no model config that transformers reads ({str(exc).splitlines()[0]})"
                               ) from exc
        model_class = getattr(transformers, architectures[0], None) if architectures else None
        return self.load((model_class or transformers.AutoModel).from_pretrained)

    def prepare(self, crops: np.ndarray):
        return self.processor(images=list(crops), return_tensors="pt")["pixel_values"]

    def describe_input(self) -> str:
        p = self.processor
        size = getattr(p, "crop_size", None) if getattr(p, "do_center_crop", False) else getattr(p, "size", None)
        return (f"{type(p).__name__} of {self.folder.name}: {dict(size or {})}, mean {getattr(p, 'image_mean', None)}, "
                f"std {getattr(p, 'image_std', None)}")

    def embed(self, faces) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            pixels = faces.to(self.device, self.model.dtype)
            rows = self.projected(pixels) if self.config.output == "projected" else self.pooled_hidden(pixels)
        return {self.name: rows.float().cpu().numpy()}

    def projected(self, pixels):
        """The image embedding in the model's joint space (CLIP, SigLIP)."""
        if hasattr(self.model, "get_image_features"):  # dual encoders
            features = self.model.get_image_features(pixel_values=pixels)
            return getattr(features, "pooler_output", features)
        embeds = getattr(self.model(pixel_values=pixels), "image_embeds", None)  # vision towers with a projection
        if embeds is None:
            raise UsageError(f"{self.folder}: {type(self.model).__name__} has no image projection (output=projected "
                             "needs a CLIP/SigLIP-style model); use output=hidden_states")
        return embeds

    def pooled_hidden(self, pixels):
        c = self.config
        tower = getattr(self.model, "vision_model", self.model)  # dual encoders (CLIP, SigLIP): their vision tower
        hidden = tower(pixel_values=pixels, output_hidden_states=True).hidden_states
        patch_size = getattr(tower.config, "patch_size", None)
        reduced = [self.over_tokens(layer, tuple(pixels.shape[-2:]), patch_size) for layer in hidden]
        return pool_layers(reduced, c.layers, c.layer_pooling, self.spec)

    def over_tokens(self, layer, image_size_px: tuple[int, int], patch_size_px):
        """(N, tokens, D) -> (N, D) by ``token_pooling``; (N, C, H, W) feature maps -> their mean over space."""
        if layer.ndim == 4:
            if self.config.token_pooling == "cls":
                raise UsageError(f"{self.spec}: {type(self.model).__name__} gives feature maps, no class token; "
                                 f"use --set {self.spec}.token_pooling=mean_patches")
            return layer.mean(dim=(2, 3))
        prefix = prefix_tokens(layer.shape[1], image_size_px, patch_size_px)
        if self.config.token_pooling == "cls":
            if prefix == 0:
                raise UsageError(f"{self.spec}: {type(self.model).__name__} has no class token; use --set "
                                 f"{self.spec}.token_pooling=mean_patches")
            return layer[:, 0]
        return layer[:, prefix:].mean(1)

    def output_schemas(self) -> dict[str, ArraySchema]:
        c = self.config
        what = ("projected image embedding" if c.output == "projected" else
                f"hidden states {list(c.layers)} ({c.layer_pooling}), {c.token_pooling} over tokens")
        return {self.name: ArraySchema(description=f"{what} of {self.folder.name}")}

    def parameters(self) -> dict[str, Any]:
        return {**super().parameters(), "model": self.folder.name, "input": self.describe_input()}


@register_family("hf_vision", HfVisionEncoder)
def hf_vision_encoder(member: str, models_dir=None, overrides=None) -> HfVisionEncoder:
    """``hf_vision:<member>``: a transformers image encoder folder (see the module docstring)."""
    return family_member(HfVisionEncoder, member, models_dir, overrides)
