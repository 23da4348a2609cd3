"""What the Hugging Face encoder families share: the model folder, its settings file, loading, and layer choice.

``hf_audio:<name>`` / ``hf_vision:<name>`` name a transformers model folder: ``<name>`` is a path, or a folder name in
the models search path (where ``python -m extract models fetch hf:<repo>@<commit>`` puts it). Settings come from
``<name>.json`` beside it in the models search path when there is one (the config dataclass's fields; ``model``
there names the folder, else the folder is ``<name>``), then from ``--set hf_audio:<name>.FIELD=VALUE``.

Layers: ``layers`` are indices into the model's ``hidden_states`` (0: the input to the first transformer layer,
-1: the last layer's output, as transformers returns them, so before any final layer norm); ``layer_pooling`` ``mean``
averages the chosen layers (a range: list them, e.g. ``[6,7,8,9]``), ``stack`` puts them side by side (D x layers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from extract.base import Extractor
from extract.registry import with_overrides
from extract.weights import ModelFolder, WeightsError, models_search_path
from features_store.common import family_array_name, file_sha256, pick_device
from features_store.errors import UsageError

MODEL_FILES = ("model.safetensors", "pytorch_model.bin")
SIDE_FILES = ("config.json", "preprocessor_config.json")
"""Files of the folder whose sha256 goes into the provenance beside the weights' (they change what is computed)."""
LAYER_POOLINGS = ("mean", "stack")


def family_config(config_class: type, family: str, member: str, models_dir, overrides: Mapping[str, Any] | None):
    """The settings of ``<family>:<member>``: ``<member's name>.json`` in the models search path when present (its
    keys are ``config_class``'s fields; ``model`` defaults to ``member``), then ``overrides`` (``--set``)."""
    import json

    feature = f"{family}:{member}"
    settings: dict[str, Any] = {"model": member}
    found = [folder / f"{Path(member).name}.json" for folder in models_search_path(models_dir)]
    path = next((candidate for candidate in found if candidate.is_file()), None)
    if path is not None:
        try:
            settings.update(json.loads(path.read_text()))
        except ValueError as exc:
            raise WeightsError(f"{path}: not a JSON settings file ({exc})") from exc
    settings = {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}
    return with_overrides(with_overrides(config_class(), settings, feature), overrides, feature)


def pool_layers(hidden_states: Sequence, layers: Sequence[int], pooling: str, feature: str):
    """The chosen ``layers`` of ``hidden_states`` (a model's tuple of tensors), averaged or stacked on the last axis."""
    import torch

    n = len(hidden_states)
    if not layers or any(not -n <= layer < n for layer in layers):
        raise UsageError(f"{feature}.layers={list(layers)}: the model has hidden states 0 ... {n - 1} (or -1 ... -{n})")
    if pooling not in LAYER_POOLINGS:
        raise UsageError(f"{feature}.layer_pooling={pooling!r}: use one of {', '.join(LAYER_POOLINGS)}")
    chosen = [hidden_states[layer] for layer in layers]
    if pooling == "stack" or len(chosen) == 1:
        return torch.cat(chosen, dim=-1)
    if len({tuple(t.shape) for t in chosen}) > 1:
        raise UsageError(f"{feature}.layers={list(layers)}: those layers differ in shape; stack them instead "
                         f"(--set {feature}.layer_pooling=stack)")
    return torch.stack(chosen).mean(0)


class HfEncoder(Extractor):
    """Base of the ``hf_*`` families: the model folder as the weights, its side files in the provenance, the model
    loaded once on the device (float16 on CUDA when ``cuda_float16``). Configs have ``model``, ``source``,
    ``license`` and ``cuda_float16`` fields."""

    offline = False
    libraries = ("numpy", "torch", "transformers")
    family: str = "hf"
    spec: str = "hf"
    """The feature as the user names it (``hf_audio:<name>``): what ``--set`` keys start with."""

    def weights(self) -> dict[str, ModelFolder]:
        c = self.config
        if not c.model:
            raise UsageError(f"{self.family}: name a model folder ({self.family}:<path or folder name>)")
        return {"model": ModelFolder(c.model, MODEL_FILES, source=c.source, license=c.license)}

    @cached_property
    def folder(self) -> Path:
        return self.weights()["model"].folder_path(self.models_search_path)

    def weights_provenance(self) -> dict[str, Any]:
        provenance = super().weights_provenance()
        for name in SIDE_FILES:
            if (self.folder / name).is_file():
                provenance[f"{name.removesuffix('.json')}_sha256"] = file_sha256(self.folder / name)
        return provenance

    @cached_property
    def device(self):
        return pick_device()

    @property
    def half_precision(self) -> bool:
        return bool(self.config.cuda_float16) and self.device.type == "cuda"

    def load(self, loader):
        """``loader(folder)`` (a transformers ``from_pretrained``), in eval mode on the device, float16 on CUDA when
        configured; a folder transformers cannot read is a :class:`~extract.weights.WeightsError` naming it."""
        import torch
        from transformers.utils import logging

        logging.disable_progress_bar()  # one bar per run is ours; loading a local model needs none
        try:
            model = loader(str(self.folder))
        except (OSError, ValueError, KeyError) as exc:
            raise WeightsError(f"{self.folder}: transformers cannot load it ({str(exc).splitlines()[0]})") from exc
        model = model.eval().to(self.device)
        return model.to(torch.float16) if self.half_precision else model

    def load_processor(self, loader, kind: str):
        """``loader(folder)`` (a transformers processor's ``from_pretrained``); a folder without one is a
        :class:`~extract.weights.WeightsError` naming it and the ``kind`` of processor expected."""
        try:
            return loader(str(self.folder))
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{self.folder}: no {kind} config (preprocessor_config.json) that transformers reads "
                               f"({str(exc).splitlines()[0]})") from exc

    def parameters(self) -> dict[str, Any]:
        """The config without where the folder came from (the weights' provenance records the files themselves)."""
        return {key: value for key, value in super().parameters().items() if key not in ("source", "license")}


def family_member(extractor_class: type[HfEncoder], member: str, models_dir, overrides) -> HfEncoder:
    """The extractor of ``<family>:<member>`` (its class's ``family``), configured by :func:`family_config`, named
    :func:`~features_store.common.family_array_name` in the store and ``<family>:<member>`` in messages."""
    family = extractor_class.family
    extractor = extractor_class(family_config(extractor_class.config_class, family, member, models_dir, overrides),
                                models_dir=models_dir)
    extractor.name, extractor.spec = family_array_name(family, member), f"{family}:{member}"
    return extractor
