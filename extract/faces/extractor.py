"""``face_crop``: the subject's face in every frame, aligned, with its box, landmarks and TSAV mask.

Three passes over the frames (decoding is ~40x faster than detection, and nothing is kept between them but the
detections and the landmarks): pass 1 detects every frame's faces (MTCNN, batched, on subsampled frames; or SCRFD,
``--set face_crop.detector=scrfd``, :mod:`extract.faces.scrfd`) and the shot cuts, tracks the faces (IoU, ending
tracks at cuts), re-identifies one person's tracks across cuts and gaps (dlib descriptors, one per track, on frames
fetched by a short extra decode) and picks the subject; M3T's smoothing steadies
the alignment landmarks where the box is steady; pass 2 finds dlib's 68 landmarks of the subject's face in the aligned
crop's pixels (TSAV's mask is drawn from them); pass 3 aligns the subject's face to the 5-point template while the
store writes the crops chunk by chunk.
Frames without the subject's face are zeros with ``face_valid`` False: never a black crop presented as a face, never
a neighbour's copy.

Arrays (T = frames): ``face_valid`` (T,) bool; ``face_box`` (T, 4) float32 x1, y1, x2, y2 in source-frame pixels;
``face_score`` (T,) detector confidence; ``face_crop`` (T, S, S, 3) uint8 RGB, S = 112 (128 as an option, M3T);
``landmarks68`` (T, 68, 2) float32 x, y in crop pixels; ``face_mask`` (T, S, S) uint8 (TSAV's polylines);
``face_align`` (T, 2, 3) float32, the similarity mapping source-frame pixels to crop pixels (so crop points, such as
``landmarks68``, go back to the frame: ``face_geometry`` solves the head pose there).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import islice

import numpy as np

from extract.base import Extractor, FeatureArray, RowBlocks
from extract.faces.align import align_crop, similarity, template
from extract.faces.detect import FaceDetector, FrameFaces, MtcnnConfig, MtcnnDetector
from extract.faces.identity import IDENTITY_WEIGHTS, face_descriptor
from extract.faces.landmarks import LANDMARKS_WEIGHTS, MASK_PARTS, landmark_mask, landmarks68_in_crop
from extract.faces.reid import group_by_identity, track_descriptors
from extract.faces.scrfd import ScrfdConfig, ScrfdDetector, scrfd_weights
from extract.faces.shots import CUT_THRESHOLD_GREY, cuts_from_changes, frame_signature, signature_change
from extract.faces.smoothing import smooth_landmarks
from extract.faces.track import SubjectRule, Track, subject, track_faces
from extract.ingest import DecodedVideo, IngestError, iter_rgb_frames
from extract.registry import register
from extract.weights import PackagedWeights, WeightsError
from features_store.errors import UsageError
from features_store.schema import ArraySchema

CROP_BLOCK_FRAMES = 256
"""Frames per block of crops handed to the store in pass 2 (9.6 MB at 112 px)."""
MTCNN_WEIGHTS = tuple(PackagedWeights("facenet_pytorch", f"data/{net}.pt", source="facenet-pytorch 2.6.0 wheel (MTCNN, "
                                      "Zhang et al. 2016)", license="MIT") for net in ("pnet", "rnet", "onet"))
DETECTORS = {"mtcnn": "MTCNN (facenet-pytorch, weights from its wheel)",
             "scrfd": "SCRFD (insightface's ONNX file, run by onnxruntime)"}
"""``face_crop.detector`` choices -> what the provenance's ``detector`` parameter says."""
SCRFD_SETTINGS = {"weights_file": "scrfd_file", "input_size_px": "scrfd_input_px", "score_threshold": "scrfd_threshold",
                  "nms_threshold": "scrfd_nms_threshold", "batch_frames": "detect_batch_frames"}
""":class:`ScrfdConfig` field -> the ``face_crop`` setting that gives it (``min_face_px`` is the same name)."""
SCRFD_FIELDS = ("scrfd_file", "scrfd_input_px", "scrfd_threshold", "scrfd_nms_threshold")
MTCNN_FIELDS = ("subsample",)


def describe_face(frame: np.ndarray, landmarks5: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib's 128-d descriptor of a face in a frame, through the same 112 px alignment and 68 landmarks as
    ``identity``, so re-identification and the stored descriptors agree."""
    crop, matrix = align_crop(frame, landmarks5, 112)
    return face_descriptor(crop, landmarks68_in_crop(frame, box, matrix))


@dataclass(frozen=True)
class FaceCropConfig:
    """Crop size in pixels (112, or 128 as M3T); detection (MTCNN on every ``subsample``-th pixel); tracking (IoU,
    gaps, shot cuts in grey levels); re-identification (tracks of at least ``reid_min_track_frames``, dlib
    distance); the subject rule; landmark smoothing (Gaussian sigma in frames, 0 = off; steady-box bound as a
    fraction of the box size). ``detector``: ``mtcnn`` (the default) or ``scrfd`` (the ONNX file ``scrfd_file`` in the
    models search path, frames resized into ``scrfd_input_px`` (width, height), candidates scoring at least
    ``scrfd_threshold``, non-maximum suppression at IoU ``scrfd_nms_threshold``); ``min_face_px`` and
    ``detect_batch_frames`` apply to both."""

    crop_size_px: int = 112
    subsample: int = 2
    min_face_px: int = 40
    detect_batch_frames: int = 32
    iou_threshold: float = 0.3
    max_gap_frames: int = 5
    shot_cut_threshold_grey: float = CUT_THRESHOLD_GREY
    reid_min_track_frames: int = 3
    same_person_distance: float = 0.6
    subject: SubjectRule = "largest"
    landmark_sigma_frames: float = 1.0
    steady_box_std: float = 0.03
    detector: str = "mtcnn"
    scrfd_file: str = "det_10g.onnx"
    scrfd_input_px: tuple[int, int] = (640, 640)
    scrfd_threshold: float = 0.5
    scrfd_nms_threshold: float = 0.4


@register
class FaceCrop(Extractor):
    """The subject's aligned face per frame and its geometry (see the module docstring)."""

    name = "face_crop"
    version = "3"
    config_class = FaceCropConfig

    def __init__(self, config: FaceCropConfig | None = None, models_dir=None):
        super().__init__(config, models_dir)
        c = self.config
        if c.detector not in DETECTORS:
            raise UsageError(f"face_crop.detector={c.detector!r}: choose one of {', '.join(DETECTORS)} (mtcnn: the "
                             f"default, weights in its wheel; scrfd: insightface's det_10g.onnx, a file you bring)")
        try:
            self.scrfd_config = ScrfdConfig(weights_file=c.scrfd_file, input_size_px=tuple(c.scrfd_input_px),
                                            score_threshold=c.scrfd_threshold, nms_threshold=c.scrfd_nms_threshold,
                                            min_face_px=c.min_face_px, batch_frames=c.detect_batch_frames)
        except UsageError as exc:
            field, _, cause = str(exc).partition("=")
            raise UsageError(f"--set face_crop.{SCRFD_SETTINGS.get(field, field)}={cause}") from None

    @property
    def libraries(self) -> tuple[str, ...]:
        detector = ("onnxruntime",) if self.config.detector == "scrfd" else ("torch", "facenet-pytorch")
        return ("numpy", *detector, "dlib-bin", "face_recognition_models", "Pillow", "av")

    @cached_property
    def detector(self) -> FaceDetector:
        """The chosen detector (MTCNN or SCRFD), loaded once per extractor (so once per run, not per video)."""
        c = self.config
        if c.detector == "scrfd":
            return ScrfdDetector(self.scrfd_config, self.models_search_path)
        return MtcnnDetector(MtcnnConfig(subsample=c.subsample, min_face_px=c.min_face_px,
                                         batch_frames=c.detect_batch_frames))

    def detector_weights(self) -> dict:
        """The detector's weights bundles, by role: MTCNN's three nets by file name, or SCRFD's file."""
        if self.config.detector == "scrfd":
            return {"detector": scrfd_weights(self.config.scrfd_file)}
        return {bundle.file_name: bundle for bundle in MTCNN_WEIGHTS}

    def weights(self) -> dict:
        return {**self.detector_weights(), "landmarks": LANDMARKS_WEIGHTS, "reidentification": IDENTITY_WEIGHTS}

    def check_weights(self) -> None:
        """As every extractor's, and a missing SCRFD file that ``models fetch`` can bring says how (the fetch needs
        the detector setting, or it fetches MTCNN's nothing)."""
        if self.config.detector == "scrfd":
            bundle = scrfd_weights(self.config.scrfd_file)
            try:
                bundle.path(self.models_search_path)
            except WeightsError as exc:
                if bundle.download is None or any((folder / bundle.file_name).is_file()
                                                  for folder in self.models_search_path):
                    raise  # no public download, or a file of that name that is not the published one
                raise WeightsError(f"{exc}; fetch it with `python -m extract models fetch face_crop --set "
                                   f"face_crop.detector=scrfd --accept-license insightface` (make weights "
                                   f"FEATURES=face_crop WEIGHTS_ARGS=\"--set face_crop.detector=scrfd "
                                   f"--accept-license insightface\")") from None
        super().check_weights()

    def weights_provenance(self) -> dict:
        """``detector`` (the three MTCNN nets, or SCRFD's one file), ``landmarks`` and ``reidentification`` (stored
        names: keep them)."""
        search_path = self.models_search_path
        return {"detector": [bundle.provenance(search_path) for bundle in self.detector_weights().values()],
                "landmarks": LANDMARKS_WEIGHTS.provenance(search_path),
                "reidentification": IDENTITY_WEIGHTS.provenance(search_path)}

    def parameters(self) -> dict:
        """The config's fields without the other detector's, ``detector`` described, the landmark model and the
        alignment template."""
        unused = MTCNN_FIELDS if self.config.detector == "scrfd" else SCRFD_FIELDS
        config = {key: value for key, value in super().parameters().items() if key not in unused}
        return {**config, "detector": DETECTORS[self.config.detector],
                "landmarks": "dlib shape_predictor_68_face_landmarks (face_recognition_models)",
                "template_px": template(self.config.crop_size_px).round(4).tolist()}

    def detect(self, video: DecodedVideo) -> tuple[list[FrameFaces], np.ndarray]:
        """Pass 1: every frame's faces, and the shot cuts (T,) bool."""
        frames = iter_rgb_frames(video.path)
        faces: list[FrameFaces] = []
        changes: list[float] = []  # one float per frame: memory stays flat with video length
        previous = None
        while batch := list(islice(frames, self.detector.batch_frames)):
            faces += self.detector.detect(batch)
            for frame in batch:
                signature = frame_signature(frame)
                if previous is not None:
                    changes.append(signature_change(previous, signature))
                previous = signature
        if len(faces) != video.n_frames:
            raise IngestError(video.path, f"second decoding pass gave {len(faces)} frames, the first {video.n_frames}")
        return faces, cuts_from_changes(np.asarray(changes), self.config.shot_cut_threshold_grey)

    def people(self, video: DecodedVideo, faces: list[FrameFaces], tracks: list[Track]) -> list[list[int]] | None:
        """Tracks grouped by person; None (each track alone) when fewer than two tracks are long enough to compare."""
        long_enough = [t for t, track in enumerate(tracks) if len(track.frames) >= self.config.reid_min_track_frames]
        if len(long_enough) < 2:
            return None
        descriptors = track_descriptors(video.path, faces, tracks, long_enough, describe_face)
        return group_by_identity(tracks, descriptors, self.config.same_person_distance)

    def extract(self, video: DecodedVideo, inputs=None) -> dict[str, FeatureArray]:
        c = self.config
        faces, cuts = self.detect(video)
        tracks = track_faces(faces, c.iou_threshold, c.max_gap_frames, cuts)
        chosen = subject(faces, tracks, c.subject, self.people(video, faces, tracks))
        landmarks5 = smooth_landmarks(chosen.landmarks5, chosen.box, chosen.track, c.landmark_sigma_frames,
                                      c.steady_box_std)
        size = self.config.crop_size_px
        n_frames = video.n_frames
        points68 = self.landmarks68(video, chosen.valid, chosen.box, landmarks5)

        def aligned_crops() -> Iterator[np.ndarray]:
            """Pass 3, as the store writes ``face_crop``: one block of crops per chunk of frames (never all T
            crops in memory)."""
            block = np.zeros((CROP_BLOCK_FRAMES, size, size, 3), np.uint8)
            filled = 0
            for index, frame in enumerate(iter_rgb_frames(video.path)):
                block[filled] = 0
                if chosen.valid[index]:
                    block[filled] = align_crop(frame, landmarks5[index], size)[0]
                filled += 1
                if filled == CROP_BLOCK_FRAMES:
                    yield block.copy()
                    filled = 0
            yield block[:filled].copy()

        def masks() -> Iterator[np.ndarray]:
            """TSAV's masks, drawn from the landmarks."""
            for start in range(0, n_frames, CROP_BLOCK_FRAMES):
                block = np.zeros((min(CROP_BLOCK_FRAMES, n_frames - start), size, size), np.uint8)
                for offset in np.flatnonzero(chosen.valid[start:start + len(block)]):
                    block[offset] = landmark_mask(points68[start + offset], size)
                yield block

        alignment = np.zeros((n_frames, 2, 3), np.float32)
        for index in np.flatnonzero(chosen.valid):
            alignment[index] = similarity(landmarks5[index], template(size))
        crops = RowBlocks((n_frames, size, size, 3), np.dtype(np.uint8), aligned_crops())
        mask_rows = RowBlocks((n_frames, size, size), np.dtype(np.uint8), masks())
        tied, subject_attrs = "face_valid", {"subject": self.config.subject}
        detector = self.config.detector.upper()
        return {
            "face_crop": FeatureArray(crops, ArraySchema(
                validity=tied, axes=("y", "x", "channel"), units="RGB uint8", columns=("red", "green", "blue"),
                description="subject's face aligned to the 5-point template"), {**subject_attrs, "size_px": size}),
            "face_valid": FeatureArray(chosen.valid, ArraySchema(
                kind="validity",
                description="True where the subject's face was detected; other rows of face arrays are zeros"),
                subject_attrs),
            "face_box": FeatureArray(chosen.box, ArraySchema(
                validity=tied, units="source-frame pixels", columns=("x1", "y1", "x2", "y2"),
                description=f"the subject's face box ({detector})"), subject_attrs),
            "face_score": FeatureArray(chosen.score, ArraySchema(validity=tied, description=f"{detector} confidence"),
                                       subject_attrs),
            "landmarks68": FeatureArray(points68, ArraySchema(
                validity=tied, axes=("point", "xy"), units="crop pixels", columns=("x", "y"),
                description="dlib 68-point landmarks in the aligned crop"), subject_attrs),
            "face_mask": FeatureArray(mask_rows, ArraySchema(
                validity=tied, axes=("y", "x"), description="TSAV landmark mask: 1-px polylines"),
                {**subject_attrs, "levels": {f"{first}-{last}": level for first, last, _, level in MASK_PARTS}}),
            "face_align": FeatureArray(alignment, ArraySchema(
                validity=tied, axes=("row", "column"), units="source-frame pixels -> crop pixels",
                description="2 x 3 similarity (scale, rotation, shift) mapping source-frame points to the crop: "
                            "[x', y'] = M[:, :2] @ [x, y] + M[:, 2]"), subject_attrs),
        }

    def landmarks68(self, video: DecodedVideo, valid: np.ndarray, box: np.ndarray,
                    landmarks5: np.ndarray) -> np.ndarray:
        """Pass 2: dlib's 68 landmarks of the subject's face, (T, 68, 2) float32 in the aligned crop's pixels
        (544 bytes a frame, held whole), computed before any array is written so nothing depends on the order the
        store writes them in; zeros where ``valid`` is False."""
        size = self.config.crop_size_px
        points68 = np.zeros((video.n_frames, 68, 2), np.float32)
        for index, frame in enumerate(iter_rgb_frames(video.path)):
            if valid[index]:
                points68[index] = landmarks68_in_crop(frame, box[index], similarity(landmarks5[index], template(size)))
        return points68
