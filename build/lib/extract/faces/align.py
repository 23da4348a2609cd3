"""Face alignment: a 5-point similarity transform (rotation, uniform scale, translation) onto a canonical template.

The template is ArcFace's 112 x 112 five-point layout (insightface), the one the seeds' IResNet/ArcFace models expect;
M3T's 128 x 128 crops scale it. The transform is the least-squares similarity of Umeyama (1991) from the detected
points to the template; crops are sampled bilinearly with PIL (pixels outside the frame are black).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
"""x, y of the eye on the image's left, the other eye, the nose tip and the mouth corners, in a 112 x 112 crop."""


def template(size_px: int) -> np.ndarray:
    """The five template points for a ``size_px`` square crop (ArcFace's layout scaled)."""
    return ARCFACE_TEMPLATE_112 * (size_px / 112.0)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix of the similarity transform mapping ``source`` (N, 2) points onto ``target`` (N, 2) with the
    least squared error (Umeyama 1991, no reflection)."""
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    centred_s, centred_t = source - mean_s, target - mean_t
    covariance = centred_t.T @ centred_s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / centred_s.var(axis=0).sum()
    return np.hstack([scale * rotation, (mean_t - scale * rotation @ mean_s)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped by a 2 x 3 affine ``matrix``."""
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def align_crop(frame: np.ndarray, landmarks5: np.ndarray, size_px: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """The ``size_px`` square aligned crop (uint8 RGB) of the face with ``landmarks5`` (5, 2) in ``frame`` pixels,
    and the 2 x 3 matrix mapping frame pixels to crop pixels."""
    matrix = similarity(landmarks5, template(size_px))
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]  # PIL asks where each crop pixel comes from
    crop = Image.fromarray(frame).transform((size_px, size_px), Image.Transform.AFFINE, inverse.ravel(),
                                            resample=Image.Resampling.BILINEAR)
    return np.asarray(crop), matrix
