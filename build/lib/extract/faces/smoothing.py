"""M3T's landmark smoothing: a temporal Gaussian over the alignment landmarks, only where the face box is steady.

Detected landmarks jitter by a pixel or two from frame to frame, and so would the aligned crops. M3T smooths the
landmarks with a temporal Gaussian kernel, "but only if the variance of the bounding box coordinates is below a
conservative threshold" (subjects sometimes move dramatically). Here a frame is smoothed when, over its kernel window
within its own track, every box coordinate's standard deviation is at most ``steady_box_std`` of the mean box size;
the window never crosses a frame without the face or a change of track (a shot cut, another person).
"""

from __future__ import annotations

import math

import numpy as np


def smooth_landmarks(landmarks5: np.ndarray, boxes: np.ndarray, track: np.ndarray, sigma_frames: float = 1.0,
                     steady_box_std: float = 0.03) -> np.ndarray:
    """(T, 5, 2) landmarks smoothed where the box is steady (see the module docstring); ``track`` (T,) is the track
    of each frame's face (-1: none). ``sigma_frames`` 0 returns a copy unchanged."""
    out = np.array(landmarks5, np.float64, copy=True)
    if sigma_frames <= 0:
        return out.astype(np.float32)
    radius = max(1, math.ceil(2 * sigma_frames))
    starts = np.flatnonzero(np.diff(np.concatenate([[-1], track])) != 0)
    for start, end in zip(starts, np.concatenate([starts[1:], [len(track)]])):
        if track[start] < 0:
            continue
        for frame in range(start, end):
            first, last = max(start, frame - radius), min(end, frame + radius + 1)
            window = boxes[first:last].astype(np.float64)
            size = np.mean(np.concatenate([window[:, 2] - window[:, 0], window[:, 3] - window[:, 1]]))
            if window.std(axis=0).max() > steady_box_std * size:
                continue  # moving: keep the detected landmarks
            weights = np.exp(-0.5 * ((np.arange(first, last) - frame) / sigma_frames) ** 2)
            out[frame] = np.tensordot(weights / weights.sum(), landmarks5[first:last], axes=1)
    return out.astype(np.float32)
