"""Shot cuts: where consecutive frames stop showing the same scene, so no face track runs across an edit.

A frame's signature is its grey-level thumbnail (32 x 32, area-averaged); a cut is a mean absolute difference of
consecutive thumbnails above ``threshold`` grey levels. Measured on the shared GRID and CREMA-D clips: at most 1.4
between frames of one shot (talking, blinking, compression), at least 11.8 across cuts between two GRID speakers in the
same studio (40 between CREMA-D and GRID). A spurious cut only splits a track, which re-identification joins again.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMBNAIL_PX = 32
CUT_THRESHOLD_GREY = 8.0


def frame_signature(frame: np.ndarray) -> np.ndarray:
    """(32, 32) float32 grey thumbnail of an (H, W, 3) uint8 RGB frame."""
    thumbnail = Image.fromarray(frame).convert("L").resize((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.BOX)
    return np.asarray(thumbnail, np.float32)


def signature_change(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean absolute grey-level difference of two consecutive frames' signatures."""
    return float(np.abs(current - previous).mean())


def cuts_from_changes(changes: np.ndarray, threshold: float = CUT_THRESHOLD_GREY) -> np.ndarray:
    """(T,) bool from the T - 1 changes between consecutive frames: True on the first frame of every shot after the
    first. Streaming callers keep one float per frame, not T signatures."""
    cuts = np.zeros(len(changes) + 1, bool)
    cuts[1:] = np.asarray(changes) > threshold
    return cuts


def shot_cuts(signatures: np.ndarray, threshold: float = CUT_THRESHOLD_GREY) -> np.ndarray:
    """(T,) bool from (T, 32, 32) signatures held together (see :func:`cuts_from_changes`)."""
    if len(signatures) == 0:
        return np.zeros(0, bool)
    return cuts_from_changes([signature_change(a, b) for a, b in zip(signatures[:-1], signatures[1:])], threshold)
