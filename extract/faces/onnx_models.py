"""Face models as ONNX files run by onnxruntime (CUDA when present): ``iresnet``, ``hsemotion`` and ``onnx:<name>``.

One runner, :class:`OnnxFaceModel`, configured by :class:`OnnxFaceConfig` (file, input size, colour order,
normalisation, layout, which output): the seeds' models are presets of it, and ``onnx:<name>`` reads the config of any
other ONNX face model (a team's ExpNet, say) from ``<name>.json`` in the models search path, next to its file::

    {"weights_file": "expnet.onnx", "input_size_px": 112, "colour_order": "RGB",
     "mean": [127.5, 127.5, 127.5], "std": [128.0, 128.0, 128.0], "layout": "NCHW",
     "output": null, "columns": [], "source": "our lab", "license": "CC BY-NC 4.0"}

Its array is ``onnx_<name>`` (T, D) (no ``:`` in store names: they become directory names), tied to ``face_valid``.

- ``iresnet``: ArcFace IResNet from an insightface pack (seed 001: IResNet100 on Glint360K, ``glintr100.onnx`` from
  ``antelopev2``; ``w600k_r50.onnx`` from ``buffalo_l`` also fits): 112 x 112 RGB on the ArcFace template (what
  ``face_crop`` is), ``(pixel - 127.5) / 127.5`` unless the graph normalises itself (insightface's rule: a Sub and a
  Mul among its first 8 nodes); ``iresnet`` (T, 512), not normalised.
- ``hsemotion``: HSEmotion (Savchenko 2022) EfficientNet ONNX, e.g. ``enet_b0_8_va_mtl.onnx``: 224 x 224 RGB
  (260 for B2 models; read from the graph), ImageNet mean/std; ``hsemotion`` (T, 10) the 8 expression logits (anger,
  contempt, disgust, fear, happiness, neutral, sadness, surprise) then valence and arousal (T, 8 for the
  expression-only models).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np

from extract.faces.embedding import FaceEmbedding, FaceInputSpec
from extract.checkpoints import onnx_session
from extract.registry import register, register_family, with_overrides
from extract.downloads import Download
from extract.sources import INSIGHTFACE_LICENSE, INSIGHTFACE_LICENSE_URL
from extract.weights import UserWeights, WeightsError, models_search_path
from features_store.schema import ArraySchema

DOWNLOAD_FIELDS = ("url", "sha256", "non_commercial", "license_url")
"""Config fields that say where the file comes from, not what the model computes (not in the parameters)."""


@dataclass(frozen=True)
class OnnxFaceConfig:
    """An ONNX face model: its file in the models search path; input size (None: from the graph), colour order
    (RGB, BGR or grey), per-channel ``mean`` / ``std`` on 0..255 pixels (None: insightface's rule, see the module
    docstring), layout (NCHW or NHWC); the output to keep (None: the first) and names of its columns; where the file
    comes from and its license; faces per batch; where ``python -m extract models fetch`` downloads the file (``url``)
    and its ``sha256`` (both optional: a team's own model is fetched like the seeds'), and whether its license is
    non-commercial (fetching then needs ``--accept-license <license>``)."""

    weights_file: str = ""
    input_size_px: int | None = None
    colour_order: str = "RGB"
    mean: tuple[float, ...] | None = (127.5, 127.5, 127.5)
    std: tuple[float, ...] | None = (127.5, 127.5, 127.5)
    layout: str = "NCHW"
    output: str | None = None
    columns: tuple[str, ...] = ()
    source: str = "your own ONNX model"
    license: str = "as its authors state"
    batch_faces: int = 64
    url: str | None = None
    sha256: str | None = None
    non_commercial: bool = False
    license_url: str | None = None

    @classmethod
    def from_json(cls, path) -> OnnxFaceConfig:
        """The config in a JSON file; unknown keys or a missing ``weights_file`` are errors naming the file."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a readable JSON model config ({exc})") from exc
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or set(raw) - known or not raw.get("weights_file"):
            raise WeightsError(f"{path}: a model config needs 'weights_file' and only these keys: "
                               f"{', '.join(sorted(known))}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()})


def _insightface_normalisation(path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """insightface's ArcFaceONNX rule: a graph that starts by subtracting and multiplying normalises its own input
    (mean 0, std 1); otherwise (pixel - 127.5) / 127.5."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = [node.name for node in graph.node[:8]]
    subtracts = any(name.startswith("Sub") or name.startswith("_minus") for name in names)
    multiplies = any(name.startswith("Mul") or name.startswith("_mul") for name in names)
    if subtracts and multiplies:
        return (0.0,) * 3, (1.0,) * 3
    return (127.5,) * 3, (127.5,) * 3


class OnnxFaceModel(FaceEmbedding):
    """Runs one ONNX face model over the aligned faces (see the module docstring)."""

    name = "onnx"
    version = "1"
    config_class = OnnxFaceConfig
    offline = False
    libraries = ("numpy", "onnxruntime", "onnx", "Pillow")

    def weights(self) -> dict:
        c = self.config
        known = {"non_commercial": c.non_commercial, "license_url": c.license_url}
        if c.url:
            return {"model": UserWeights(c.weights_file, c.source, c.license, sha256=c.sha256,
                                         download=Download((c.url,), c.sha256), **known)}
        return {"model": UserWeights.published(c.weights_file, c.source, c.license, **known)}

    @cached_property
    def session(self):
        """The onnxruntime session, on CUDA when the installed onnxruntime offers it."""
        return onnx_session(self.weights()["model"].path(self.models_search_path))

    @cached_property
    def input_spec(self) -> FaceInputSpec:
        c = self.config
        size = c.input_size_px
        if size is None:
            shape = self.session.get_inputs()[0].shape
            size = shape[2] if c.layout == "NCHW" else shape[1]
            if not isinstance(size, int):
                raise WeightsError(f"{c.weights_file}: the graph's input size is not fixed ({shape}); "
                                   f"set input_size_px in the config")
        mean, std = c.mean, c.std
        if mean is None or std is None:
            mean, std = _insightface_normalisation(self.weights()["model"].path(self.models_search_path))
        return FaceInputSpec(size_px=int(size), colour_order=c.colour_order, mean=tuple(mean), std=tuple(std),
                             layout=c.layout)

    def embed(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        session = self.session
        outputs = session.run([self.config.output] if self.config.output else None,
                              {session.get_inputs()[0].name: faces})
        return {self.name: np.asarray(outputs[0], np.float32).reshape(len(faces), -1)}

    def output_schemas(self) -> dict[str, ArraySchema]:
        return {self.name: ArraySchema(columns=tuple(self.config.columns) if self.config.columns else None)}

    def output_attrs(self) -> dict[str, dict[str, Any]]:
        return {self.name: {"model_output": self.config.output or self.session.get_outputs()[0].name}}

    def parameters(self) -> dict:
        """The config (without where the file is fetched from: the weights' provenance records the file itself) and
        the input as prepared."""
        config = {key: value for key, value in super().parameters().items() if key not in DOWNLOAD_FIELDS}
        return {**config, "input": self.input_spec.describe()}


@register_family("onnx", OnnxFaceModel)
def onnx_model_from_config(model_name: str, models_dir=None, overrides=None) -> OnnxFaceModel:
    """``onnx:<model_name>``: the ONNX face model configured by ``<model_name>.json`` in the models search path
    (``overrides``: ``--set onnx:<model_name>.FIELD=VALUE``)."""
    config_path = UserWeights(f"{model_name}.json", source="you: its keys are in extract/faces/onnx_models.py",
                              license="n/a").path(models_search_path(models_dir))
    config = with_overrides(OnnxFaceConfig.from_json(config_path), overrides, f"onnx:{model_name}")
    extractor = OnnxFaceModel(config, models_dir=models_dir)
    extractor.name = f"onnx_{model_name}"
    return extractor


@dataclass(frozen=True)
class IresnetConfig(OnnxFaceConfig):
    weights_file: str = "glintr100.onnx"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = ("insightface model packs (antelopev2: glintr100.onnx; buffalo_l: w600k_r50.onnx), "
                   "github.com/deepinsight/insightface/releases/download/v0.7/<pack>.zip")
    license: str = INSIGHTFACE_LICENSE
    non_commercial: bool = True
    license_url: str | None = INSIGHTFACE_LICENSE_URL


@register
class Iresnet(OnnxFaceModel):
    """ArcFace IResNet embeddings (see the module docstring)."""

    name = "iresnet"
    config_class = IresnetConfig


HSEMOTION_CLASSES = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


@dataclass(frozen=True)
class HsemotionConfig(OnnxFaceConfig):
    weights_file: str = "enet_b0_8_va_mtl.onnx"
    mean: tuple[float, ...] | None = (123.675, 116.28, 103.53)  # ImageNet's (0.485, 0.456, 0.406) x 255
    std: tuple[float, ...] | None = (58.395, 57.12, 57.375)     # ImageNet's (0.229, 0.224, 0.225) x 255
    source: str = ("HSEmotion (github.com/av-savchenko/face-emotion-recognition, models/affectnet_emotions/onnx; "
                   "also in the hsemotion-onnx package)")
    license: str = "Apache-2.0"


@register
class Hsemotion(OnnxFaceModel):
    """HSEmotion expression logits, valence and arousal (see the module docstring)."""

    name = "hsemotion"
    config_class = HsemotionConfig

    def output_schemas(self) -> dict[str, ArraySchema]:
        columns = list(HSEMOTION_CLASSES)
        if self.output_shapes[self.name] == (10,):
            columns += ["valence", "arousal"]
        return {self.name: ArraySchema(columns=tuple(columns),
                                       units="logits (expressions); valence and arousal as the model gives them")}
