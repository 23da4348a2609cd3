"""68-point landmarks (dlib's shape predictor, shipped by face_recognition_models) and TSAV's landmark mask.

Landmarks are predicted on the source frame inside the detected box, then mapped into the aligned crop with the
crop's similarity matrix, so ``landmarks68`` is in crop pixels. :func:`landmark_mask` draws TSAV's (seed 004) mask:
1-px polylines per facial part, each part at its own grey level.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from extract.faces.align import apply
from extract.weights import PackagedWeights

MASK_PARTS = (  # (first point, last point, closed, grey level), dlib's 68-point numbering
    (48, 59, True, 255),   # mouth, outer contour
    (17, 21, False, 223),  # left eyebrow
    (22, 26, False, 191),  # right eyebrow
    (36, 41, True, 159),   # left eye
    (42, 47, True, 127),   # right eye
    (28, 30, False, 63),   # nose bridge
    (6, 10, False, 31),    # chin
)


LANDMARKS_WEIGHTS = PackagedWeights("face_recognition_models", "models/shape_predictor_68_face_landmarks.dat",
                                    source="face_recognition_models 0.3.0 wheel (dlib, iBUG 300-W)",
                                    license="package MIT; iBUG 300-W annotations: research use")


@lru_cache(maxsize=1)
def shape_predictor():
    """dlib's 68-point shape predictor from the face_recognition_models wheel (loaded once per process)."""
    import dlib
    return dlib.shape_predictor(str(LANDMARKS_WEIGHTS.path()))


def landmarks68(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(68, 2) float32 x, y in ``frame`` pixels of the face inside ``box`` (x1, y1, x2, y2)."""
    import dlib
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    shape = shape_predictor()(frame, dlib.rectangle(x1, y1, x2, y2))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


def landmarks68_in_crop(frame: np.ndarray, box: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks in the aligned crop's pixels (``matrix`` maps frame pixels to crop pixels)."""
    return apply(matrix, landmarks68(frame, box)).astype(np.float32)


def landmark_mask(points68: np.ndarray, size_px: int = 112) -> np.ndarray:
    """TSAV's mask: (size_px, size_px) uint8, zeros with 1-px polylines of ``MASK_PARTS`` at their grey levels."""
    mask = Image.new("L", (size_px, size_px), 0)
    draw = ImageDraw.Draw(mask)
    for first, last, closed, level in MASK_PARTS:
        line = [tuple(p) for p in points68[first:last + 1].tolist()]
        draw.line(line + line[:1] if closed else line, fill=level, width=1)
    return np.asarray(mask)
