"""SCRFD face detection (Guo et al. 2021, "Sample and Computation Redistribution for Efficient Face Detection",
insightface's successor to RetinaFace) from its ONNX file, run by onnxruntime (CUDA when the installed onnxruntime
offers it), decoded here with numpy and PIL (insightface's own decoder needs OpenCV, which affectsync does not install).

What the graph takes and gives, as insightface's ``model_zoo/scrfd.py`` reads it:

- input (B, 3, H, W) float32 RGB, ``(pixel - 127.5) / 128``; the frame resized bilinearly keeping its aspect ratio
  into W x H (640 x 640 unless the graph fixes its size), placed top-left, the rest black (pixel 0);
- outputs, in this order: scores (N_s, 1) for each stride s, then box distances (N_s, 4), then keypoint offsets
  (N_s, 10); ``N_s = (H / s) * (W / s) * anchors``, anchors centred on the top-left corner of their cell,
  ``(x, y) = (column, row) * s``, the anchors of one location next to each other. 9 outputs: strides 8, 16, 32 with
  2 anchors per location (det_10g.onnx of buffalo_l, scrfd_10g_bnkps.onnx of antelopev2); 15 outputs: strides 8 to
  128 with 1 anchor. A leading batch axis (B, N_s, C) when the graph has one. The 6- and 10-output graphs have no
  keypoints and are refused: face alignment needs them.
- a box is ``(x - d0, y - d1, x + d2, y + d3) * s``-scaled distances from the anchor centre, a keypoint
  ``(x + dx, y + dy)``; candidates scoring at least ``score_threshold`` (0.5) are kept, sorted by score, and
  non-maximum suppression at IoU ``nms_threshold`` (0.4, insightface's +1-pixel areas) leaves one box per face.

Keypoints come in insightface's order, the one its ``norm_crop`` maps onto the ArcFace template (and
:mod:`extract.faces.align` uses): the eye on the image's left (the subject's right eye), the other eye, the nose tip,
the mouth corner on the image's left, the other one. That is MTCNN's order too, so :class:`FrameFaces` means the
same thing whichever detector filled it.

Two departures from insightface, both in source-frame geometry: boxes and keypoints are scaled back with the exact
horizontal and vertical resize factors (insightface uses the vertical one for both, off by up to a pixel when the
resized width was rounded), and PIL's bilinear resize filters when it shrinks (OpenCV's samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from extract.checkpoints import onnx_session
from extract.faces.detect import FaceDetector, FrameFaces
from extract.sources import INSIGHTFACE_LICENSE, INSIGHTFACE_LICENSE_URL, INSIGHTFACE_RELEASES
from extract.weights import UserWeights, WeightsError
from features_store.common import out_of_memory_names
from features_store.errors import UsageError

SCRFD_SOURCE = ("SCRFD-10GF with keypoints from insightface's model packs (buffalo_l: det_10g.onnx; antelopev2: the "
                f"same file as scrfd_10g_bnkps.onnx), {INSIGHTFACE_RELEASES}/<pack>.zip")
INPUT_MEAN = 127.5
INPUT_STD = 128.0
OUTPUT_LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}
"""Number of graph outputs -> (strides in input pixels, anchors per location), for the graphs with keypoints."""
WITHOUT_KEYPOINTS = (6, 10)


def scrfd_weights(file_name: str = "det_10g.onnx") -> UserWeights:
    """The SCRFD ONNX file as a user weights bundle: insightface's published files are fetched from their pack and
    pinned by sha256; another name is a file you bring (its sha256 recorded when first used)."""
    return UserWeights.published(file_name, SCRFD_SOURCE, INSIGHTFACE_LICENSE, non_commercial=True,
                                 license_url=INSIGHTFACE_LICENSE_URL)


@dataclass(frozen=True)
class ScrfdConfig:
    """SCRFD settings: the ONNX file (in the models search path), the input size in pixels (width, height; used when
    the graph does not fix it), the lowest score kept, the IoU above which non-maximum suppression drops the weaker
    box, the smallest face kept (shorter box side, source pixels), and frames per onnxruntime call (when the graph's
    batch axis is dynamic; otherwise one frame a call)."""

    weights_file: str = "det_10g.onnx"
    input_size_px: tuple[int, int] = (640, 640)
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    min_face_px: int = 0
    batch_frames: int = 32

    def __post_init__(self):
        """A :class:`~features_store.errors.UsageError` starting ``FIELD=VALUE:`` for a value that cannot work."""
        size = tuple(self.input_size_px)
        if len(size) != 2 or not all(isinstance(side, int) and side > 0 and side % 32 == 0 for side in size):
            raise UsageError(f"input_size_px={list(size)}: give [width, height] in pixels, multiples of 32 (the "
                             f"largest stride of the 3-stride graphs; insightface's is [640, 640])")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise UsageError(f"score_threshold={self.score_threshold}: a score in [0, 1]")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise UsageError(f"nms_threshold={self.nms_threshold}: an IoU in (0, 1]")
        if self.batch_frames < 1:
            raise UsageError(f"batch_frames={self.batch_frames}: at least 1")


@lru_cache(maxsize=32)
def anchor_centres(rows: int, columns: int, stride: int, anchors: int) -> np.ndarray:
    """(rows * columns * anchors, 2) x, y in input pixels: each cell's top-left corner, ``anchors`` times in a row,
    cells row by row (the order of SCRFD's outputs)."""
    ys, xs = np.mgrid[:rows, :columns]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    centres = np.repeat(centres, anchors, axis=0)
    centres.flags.writeable = False
    return centres


def letterbox_size(frame_hw: tuple[int, int], input_wh: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a frame of ``frame_hw`` pixels resized into ``input_wh`` keeping its aspect ratio, as
    insightface rounds it (down)."""
    height, width = frame_hw
    input_width, input_height = input_wh
    if height / width > input_height / input_width:
        return max(1, int(input_height * width / height)), input_height
    return input_width, max(1, int(input_width * height / width))


def to_input(frames: Sequence[np.ndarray], input_wh: tuple[int, int]) -> np.ndarray:
    """(B, 3, H, W) float32 input of same-sized (h, w, 3) uint8 RGB ``frames``: each resized into the top-left of
    W x H keeping its aspect ratio, black (pixel 0) around it, ``(pixel - 127.5) / 128``."""
    input_width, input_height = input_wh
    new_width, new_height = letterbox_size(frames[0].shape[:2], input_wh)
    blob = np.full((len(frames), 3, input_height, input_width), -INPUT_MEAN / INPUT_STD, np.float32)
    for index, frame in enumerate(frames):
        if frame.shape[:2] != (new_height, new_width):
            frame = np.asarray(Image.fromarray(frame).resize((new_width, new_height), Image.Resampling.BILINEAR))
        blob[index, :, :new_height, :new_width] = (frame.transpose(2, 0, 1).astype(np.float32) - INPUT_MEAN) / INPUT_STD
    return blob


def decode(outputs: Sequence[np.ndarray], strides: Sequence[int], anchors: int, input_wh: tuple[int, int],
           score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's candidates from its SCRFD outputs (scores, box distances, keypoint offsets per stride, each
    (N_s, C)): scores (M,), boxes (M, 4) x1, y1, x2, y2 and keypoints (M, 5, 2) in input pixels, those scoring at
    least ``score_threshold``, best first."""
    n_levels = len(strides)
    input_width, input_height = input_wh
    scores, boxes, keypoints = [], [], []
    for level, stride in enumerate(strides):
        level_scores = np.asarray(outputs[level], np.float32).reshape(-1)
        kept = np.flatnonzero(level_scores >= score_threshold)
        if not len(kept):
            continue
        centres = anchor_centres(input_height // stride, input_width // stride, stride, anchors)[kept]
        distances = np.asarray(outputs[level + n_levels], np.float32).reshape(-1, 4)[kept] * stride
        offsets = np.asarray(outputs[level + 2 * n_levels], np.float32).reshape(-1, 5, 2)[kept] * stride
        scores.append(level_scores[kept])
        boxes.append(np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1))
        keypoints.append(centres[:, None, :] + offsets)
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32)
    all_scores = np.concatenate(scores)
    order = np.argsort(-all_scores, kind="stable")
    return all_scores[order], np.concatenate(boxes)[order], np.concatenate(keypoints)[order]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes non-maximum suppression keeps, best first: a box overlapping a better one by IoU above
    ``iou_threshold`` is dropped (areas counted inclusively, ``(x2 - x1 + 1) * (y2 - y1 + 1)``, as insightface)."""
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0.0, x2 - x1 + 1) * np.maximum(0.0, y2 - y1 + 1)  # an inverted box has none
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        overlap = width * height
        union = np.maximum(areas[best] + areas[rest] - overlap, np.finfo(np.float32).tiny)
        order = rest[overlap / union <= iou_threshold]
    return np.asarray(keep, np.int64)


class ScrfdDetector(FaceDetector):
    """SCRFD from its ONNX file (see the module docstring): frames in, one :class:`FrameFaces` each, boxes and
    keypoints in source-frame pixels, scores in [0, 1]. A missing file is a
    :class:`~extract.weights.WeightsError` naming it (and its sha256, for insightface's)."""

    name = "scrfd"

    def __init__(self, config: ScrfdConfig = ScrfdConfig(), models_search_path: Sequence[Path] = (),
                 providers: Sequence[str] | None = None, threads: int | None = None):
        self.config = config
        self.batch_frames = config.batch_frames
        self.weights = scrfd_weights(config.weights_file)
        self.path = self.weights.path(models_search_path)
        self.providers = providers
        self.threads = threads

    @cached_property
    def session(self):
        """The onnxruntime session, on CUDA when the installed onnxruntime offers it (unless ``providers`` says),
        with ``threads`` intra-op threads (None: onnxruntime's default, one per physical core)."""
        return onnx_session(self.path, self.providers, self.threads)

    @cached_property
    def layout(self) -> tuple[tuple[int, ...], int, bool]:
        """(strides, anchors per location, whether outputs carry a batch axis), from the graph's outputs."""
        outputs = self.session.get_outputs()
        if len(outputs) in WITHOUT_KEYPOINTS:
            raise WeightsError(f"{self.path}: an SCRFD graph without keypoints ({len(outputs)} outputs); faces are "
                               f"aligned on the 5 keypoints, so use a keypoint model (det_10g.onnx, "
                               f"scrfd_*_bnkps.onnx / *_kps.onnx)")
        if len(outputs) not in OUTPUT_LAYOUTS:
            raise WeightsError(f"{self.path}: {len(outputs)} outputs, not an SCRFD graph (9: scores, boxes and "
                               f"keypoints at strides 8, 16, 32; or 15 at strides 8 to 128)")
        strides, anchors = OUTPUT_LAYOUTS[len(outputs)]
        return strides, anchors, len(outputs[0].shape) == 3

    @cached_property
    def input_size_px(self) -> tuple[int, int]:
        """(width, height) the frames are resized into: the graph's own when it fixes them, else the config's."""
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4:
            raise WeightsError(f"{self.path}: input of shape {shape}, expected (batch, 3, height, width)")
        height, width = shape[2], shape[3]
        if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            return width, height
        return tuple(self.config.input_size_px)

    @cached_property
    def frames_per_call(self) -> int:
        """``batch_frames`` when the graph's batch axis is dynamic and its outputs have one; 1 otherwise."""
        batch = self.session.get_inputs()[0].shape[0]
        if isinstance(batch, int) and batch > 1:
            raise WeightsError(f"{self.path}: its batch size is fixed at {batch}; export it with batch 1 or a "
                               f"dynamic one")
        return self.config.batch_frames if self.layout[2] and not isinstance(batch, int) else 1

    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        faces: list[FrameFaces] = []
        for start in range(0, len(frames), self.frames_per_call):
            faces += self._detect_batch(frames[start:start + self.frames_per_call])
        return faces

    def _detect_batch(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        strides, anchors, batched = self.layout
        input_wh = self.input_size_px
        height, width = frames[0].shape[:2]
        new_width, new_height = letterbox_size((height, width), input_wh)
        scale = np.array([width / new_width, height / new_height], np.float32)  # input pixels -> frame pixels
        session = self.session
        with out_of_memory_names("--set face_crop.detect_batch_frames", len(frames)):
            outputs = session.run(None, {session.get_inputs()[0].name: to_input(frames, input_wh)})
        self._check_rows(outputs, strides, anchors, input_wh, batched)
        faces = []
        for index in range(len(frames)):
            per_image = [output[index] for output in outputs] if batched else outputs
            scores, boxes, keypoints = decode(per_image, strides, anchors, input_wh, self.config.score_threshold)
            kept = nms(boxes, scores, self.config.nms_threshold)
            boxes = boxes[kept] * np.tile(scale, 2)
            keypoints = keypoints[kept] * scale
            sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            large = sides >= self.config.min_face_px
            faces.append(FrameFaces(boxes[large].astype(np.float32), scores[kept][large].astype(np.float32),
                                    keypoints[large].astype(np.float32)))
        return faces

    def _check_rows(self, outputs: list[np.ndarray], strides: Sequence[int], anchors: int,
                    input_wh: tuple[int, int], batched: bool) -> None:
        """Each output has the rows its stride gives (else the graph is not SCRFD's layout, or the input size
        does not fit its strides)."""
        widths = (1, 4, 10)
        for position, output in enumerate(outputs):
            stride = strides[position % len(strides)]
            rows = (input_wh[1] // stride) * (input_wh[0] // stride) * anchors
            shape = output.shape[1:] if batched else output.shape
            if tuple(shape) != (rows, widths[position // len(strides)]):
                raise WeightsError(f"{self.path}: output {position} has shape {list(output.shape)}, expected "
                                   f"{rows} x {widths[position // len(strides)]} at stride {stride} for a "
                                   f"{input_wh[0]} x {input_wh[1]} input (SCRFD's layout: scores, boxes, keypoints "
                                   f"per stride)")
