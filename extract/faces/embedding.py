"""Per-frame face models over the stored aligned faces: what every face embedding shares.

A :class:`FaceEmbedding` reads ``face_crop`` in batches of the frames where ``face_valid`` is True, prepares them as
its model expects (:class:`FaceInputSpec`: size, colour order, normalisation, layout), runs the model and writes each
output with T rows: zeros where there is no face, tied to ``face_valid``. Subclasses say how to load and run the model
(:meth:`FaceEmbedding.embed`) and describe their outputs (:meth:`FaceEmbedding.output_attrs`); torch and ONNX models
share :class:`TorchFaceEmbedding` / the ONNX runner in :mod:`extract.faces.onnx_models`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from PIL import Image

from extract.base import Extractor, FeatureArray
from extract.checkpoints import load_network
from extract.ingest import DecodedVideo
from features_store.common import out_of_memory_names
from features_store.schema import ArraySchema

ColourOrder = Literal["RGB", "BGR", "grey"]
Layout = Literal["NCHW", "NHWC"]
FACE_CROP_SIZE_PX = 112
"""The default aligned crop's size (the blank face that tells a model's output shapes)."""
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
"""ITU-R 601 luma weights of R, G, B (what OpenCV and the fer package use for grey)."""


@dataclass(frozen=True)
class FaceInputSpec:
    """What a face model takes: a ``size_px`` square (resized bilinearly from the aligned crop), channels in
    ``colour_order``, ``(pixel - mean) / std`` per channel with pixels in 0..255, in ``layout``."""

    size_px: int
    colour_order: ColourOrder = "RGB"
    mean: tuple[float, ...] = (127.5, 127.5, 127.5)
    std: tuple[float, ...] = (127.5, 127.5, 127.5)
    layout: Layout = "NCHW"

    def __post_init__(self):
        if self.colour_order not in ("RGB", "BGR", "grey"):
            raise ValueError(f"colour_order must be RGB, BGR or grey, not {self.colour_order!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be NCHW or NHWC, not {self.layout!r}")
        channels = 1 if self.colour_order == "grey" else 3
        if len(self.mean) not in (1, channels) or len(self.std) not in (1, channels):
            raise ValueError(f"mean and std need 1 or {channels} values for {self.colour_order} input")

    def describe(self) -> str:
        return (f"{self.size_px} x {self.size_px} {self.colour_order}, (pixel - {list(self.mean)}) / "
                f"{list(self.std)}, {self.layout}")

    def prepare(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB faces -> float32 model input in this spec's size, colours, scale and layout."""
        if crops.shape[1] != self.size_px:
            crops = np.stack([np.asarray(Image.fromarray(crop).resize((self.size_px, self.size_px),
                                                                      Image.Resampling.BILINEAR)) for crop in crops])
        pixels = crops.astype(np.float32)
        if self.colour_order == "grey":
            pixels = (pixels @ LUMA_WEIGHTS)[..., None]
        elif self.colour_order == "BGR":
            pixels = pixels[..., ::-1]
        pixels = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout == "NCHW":
            pixels = pixels.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(pixels, np.float32)


def valid_face_batches(crops, valid: np.ndarray, batch_faces: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame indices, (n, S, S, 3) crops) for the valid frames, ``batch_faces`` at a time; each batch is one
    contiguous read of the stored ``crops`` (a zarr array), so reading follows the store's time chunks."""
    rows = np.flatnonzero(valid)
    for start in range(0, len(rows), batch_faces):
        batch = rows[start:start + batch_faces]
        yield batch, np.asarray(crops[int(batch[0]):int(batch[-1]) + 1])[batch - batch[0]]


class FaceEmbedding(Extractor):
    """Base of the per-frame face models (see the module docstring). Configs have a ``batch_faces`` field."""

    requires = ("face_crop",)

    @property
    def input_spec(self) -> FaceInputSpec:
        """How faces are prepared for the model (subclasses give it, or override :meth:`prepare`)."""
        raise NotImplementedError(f"{type(self).__name__} gives neither input_spec nor its own prepare()")

    def prepare(self, crops: np.ndarray) -> Any:
        """(N, S, S, 3) uint8 RGB crops -> the model's input (by default as :attr:`input_spec` says)."""
        return self.input_spec.prepare(crops)

    def describe_input(self) -> str:
        """How the crops are prepared, for the output's ``input`` attribute."""
        return self.input_spec.describe()

    @abstractmethod
    def embed(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        """Model outputs for prepared ``faces`` (see :attr:`input_spec`): array name -> (n, ...) float32."""

    @abstractmethod
    def output_schemas(self) -> dict[str, ArraySchema]:
        """What each output array holds (columns, units, description), by array name; the validity, ``face_valid``,
        is added here."""

    def output_attrs(self) -> dict[str, dict[str, Any]]:
        """Other attributes of the output arrays worth seeing at a glance (e.g. the model's output layer)."""
        return {}

    @cached_property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-frame shape of each output, from one blank face through the model (the model decides, not us)."""
        blank = np.zeros((1, FACE_CROP_SIZE_PX, FACE_CROP_SIZE_PX, 3), np.uint8)
        return {name: value.shape[1:] for name, value in self.embed(self.prepare(blank)).items()}

    def extract(self, video: DecodedVideo, inputs: Mapping[str, Any] | None = None) -> dict[str, FeatureArray]:
        valid = np.asarray(inputs["face_valid"][...])
        outputs = {name: np.zeros((len(valid), *shape), np.float32) for name, shape in self.output_shapes.items()}
        for rows, crops in valid_face_batches(inputs["face_crop"], valid, self.config.batch_faces):
            with out_of_memory_names(f"--set {self.name}.batch_faces", self.config.batch_faces):
                embedded = self.embed(self.prepare(crops))
            for name, value in embedded.items():
                outputs[name][rows] = value
        schemas, attrs = self.output_schemas(), self.output_attrs()
        return {name: FeatureArray(value, dataclasses.replace(schemas.get(name, ArraySchema()), validity="face_valid"),
                                   {"input": f"face_crop as {self.describe_input()}", **attrs.get(name, {})})
                for name, value in outputs.items()}


class TorchFaceEmbedding(FaceEmbedding):
    """A torch face model from a user's state dict: subclasses build the network for it (:meth:`network`) and
    say which outputs it gives (:meth:`outputs`)."""

    @abstractmethod
    def network(self, state_dict: dict[str, Any]):
        """The ``torch.nn.Module`` (in eval mode, weights loaded strictly) for ``state_dict``."""

    @abstractmethod
    def outputs(self, model, faces) -> dict[str, Any]:
        """Output tensors for a batch of input tensors, by array name."""

    @cached_property
    def model(self):
        """(network, device), loaded once per extractor."""
        return load_network(self.weights()["model"].path(self.models_search_path), self.network, self.name)

    def embed(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        model, device = self.model
        with torch.inference_mode():
            out = self.outputs(model, torch.from_numpy(faces).to(device))
        return {name: value.float().cpu().numpy() for name, value in out.items()}
