"""``face_crop``: the subject's face in every frame, aligned, with its box, landmarks and TSAV mask.

Two passes over the frames (decoding is ~40x faster than detection, and nothing is kept between them but the
detections): pass 1 detects every frame's faces (MTCNN, batched, on subsampled frames), tracks them (IoU) and picks
the subject; pass 2 aligns the subject's face to the 5-point template and adds dlib's 68 landmarks and TSAV's mask.
Frames without the subject's face are zeros with ``face_valid`` False: never a black crop presented as a face, never
a neighbour's copy.

Arrays (T = frames): ``face_valid`` (T,) bool; ``face_box`` (T, 4) float32 x1, y1, x2, y2 in source-frame pixels;
``face_score`` (T,) detector confidence; ``face_crop`` (T, S, S, 3) uint8 RGB, S = 112 (128 as an option, M3T);
``landmarks68`` (T, 68, 2) float32 x, y in crop pixels; ``face_mask`` (T, S, S) uint8 (TSAV's polylines).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import islice

import numpy as np

from extract.base import Extractor, FeatureArray
from extract.faces.align import align_crop, template
from extract.faces.detect import FrameFaces, MtcnnConfig, MtcnnDetector
from extract.faces.landmarks import LANDMARKS_WEIGHTS, MASK_PARTS, landmark_mask, landmarks68_in_crop
from extract.faces.track import SubjectRule, subject, track_faces
from extract.ingest import DecodedVideo, IngestError, iter_rgb_frames
from extract.registry import register
from extract.weights import PackagedWeights

MTCNN_WEIGHTS = tuple(PackagedWeights("facenet_pytorch", f"data/{net}.pt", source="facenet-pytorch 2.6.0 wheel (MTCNN, "
                                      "Zhang et al. 2016)", license="MIT") for net in ("pnet", "rnet", "onet"))


@dataclass(frozen=True)
class FaceCropConfig:
    """Detection (MTCNN on every ``subsample``-th pixel), tracking and subject rule, and the crop size in pixels."""

    crop_size_px: int = 112
    subsample: int = 2
    min_face_px: int = 40
    detect_batch_frames: int = 32
    iou_threshold: float = 0.3
    max_gap_frames: int = 5
    subject: SubjectRule = "largest"


@register
class FaceCrop(Extractor):
    """The subject's aligned face per frame and its geometry (see the module docstring)."""

    name = "face_crop"
    version = "1"
    config_class = FaceCropConfig
    libraries = ("numpy", "torch", "facenet-pytorch", "dlib-bin", "face_recognition_models", "Pillow", "av")

    @cached_property
    def detector(self) -> MtcnnDetector:
        """MTCNN, loaded once per extractor (so once per run, not per video)."""
        c = self.config
        return MtcnnDetector(MtcnnConfig(subsample=c.subsample, min_face_px=c.min_face_px,
                                         batch_frames=c.detect_batch_frames))

    def weights(self) -> dict:
        return {**{bundle.file_name: bundle for bundle in MTCNN_WEIGHTS}, "landmarks": LANDMARKS_WEIGHTS}

    def parameters(self) -> dict:
        return {**super().parameters(), "detector": "MTCNN (facenet-pytorch, weights from its wheel)",
                "landmarks": "dlib shape_predictor_68_face_landmarks (face_recognition_models)",
                "template_px": template(self.config.crop_size_px).round(4).tolist()}

    def detect(self, video: DecodedVideo) -> list[FrameFaces]:
        """Pass 1: every frame's faces."""
        frames = iter_rgb_frames(video.path)
        faces: list[FrameFaces] = []
        while batch := list(islice(frames, self.detector.batch_frames)):
            faces += self.detector.detect(batch)
        if len(faces) != video.n_frames:
            raise IngestError(video.path, f"second decoding pass gave {len(faces)} frames, the first {video.n_frames}")
        return faces

    def extract(self, video: DecodedVideo, inputs=None) -> dict[str, FeatureArray]:
        faces = self.detect(video)
        chosen = subject(faces, track_faces(faces, self.config.iou_threshold, self.config.max_gap_frames),
                         self.config.subject)
        size = self.config.crop_size_px
        n_frames = video.n_frames
        crops = np.zeros((n_frames, size, size, 3), np.uint8)
        points68 = np.zeros((n_frames, 68, 2), np.float32)
        masks = np.zeros((n_frames, size, size), np.uint8)
        for index, frame in enumerate(iter_rgb_frames(video.path)):  # pass 2
            if chosen.valid[index]:
                crops[index], matrix = align_crop(frame, chosen.landmarks5[index], size)
                points68[index] = landmarks68_in_crop(frame, chosen.box[index], matrix)
                masks[index] = landmark_mask(points68[index], size)
        tied = {"validity": "face_valid", "subject": self.config.subject}
        return {
            "face_crop": FeatureArray(crops, {**tied, "units": "RGB uint8", "size_px": size,
                                              "description": "subject's face aligned to the 5-point template"}),
            "face_valid": FeatureArray(chosen.valid, {
                "description": "True where the subject's face was detected; other rows of face arrays are zeros"}),
            "face_box": FeatureArray(chosen.box, {**tied, "units": "source-frame pixels",
                                                  "columns": ["x1", "y1", "x2", "y2"]}),
            "face_score": FeatureArray(chosen.score, {**tied, "description": "MTCNN confidence"}),
            "landmarks68": FeatureArray(points68, {**tied, "units": "crop pixels", "columns": ["x", "y"],
                                                   "description": "dlib 68-point landmarks in the aligned crop"}),
            "face_mask": FeatureArray(masks, {**tied, "description": "TSAV landmark mask: 1-px polylines",
                                              "levels": {f"{first}-{last}": level
                                                         for first, last, _, level in MASK_PARTS}}),
        }
