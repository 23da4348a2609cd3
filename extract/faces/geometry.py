"""``face_geometry``: head pose and a few face distances per frame, from the stored 68 landmarks (no image is read).

Input (``face_crop``, version 3): ``landmarks68`` (T, 68, 2) in crop pixels, ``face_align`` (T, 2, 3), the similarity
mapping source-frame pixels to crop pixels (inverted here to take the 68 points back to the source frame), and
``face_valid``. Output: ``face_geometry`` (T, D) float32 with the columns of :data:`COLUMNS`, zeros where
``face_valid`` is False.

Head pose. The pose of a generic 3D face (:data:`MEAN_FACE_68_MM`) is solved from the 68 points (or the rigid ones,
:data:`POSE_POINTS`) in source-frame pixels (perspective-n-point): the camera has focal length = frame width in pixels,
principal point = frame centre, no distortion; the rotation (three Euler angles) and translation minimise the
reprojection error (Levenberg-Marquardt, ``scipy.optimize.least_squares``, analytic Jacobian), started from the better
of a closed-form weak-perspective fit of the frame and the previous frame's solution.
Camera axes: x to the image's right, y down, z forward (into the scene). The head's rotation in them is
``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` (right-handed rotations about the camera's axes: pitch is applied first, then
yaw, then roll), ``R = I`` for a face looking straight into the camera, upright. Angles in degrees:

- ``yaw_deg`` > 0: the subject turns to their own left (the nose moves to the image's right, for an unmirrored image);
- ``pitch_deg`` > 0: the subject looks up (chin up, the nose moves up in the image);
- ``roll_deg`` > 0: the head tilts towards the subject's left shoulder (clockwise on the screen).

The angles are relative to the camera's axes, not to the line of sight (a face off-centre in a wide frame that looks
at the lens has a small yaw or pitch), and the focal length is a guess: read them as head movements more than as
absolute directions. ``pose_error_iod`` is the RMS reprojection error of the fitted points in inter-ocular distances
(a bad fit, or landmarks the rigid mean face cannot explain, shows there).

The 3D face: the 68-point mean face of OpenFace's "In-the-wild aligned" point distribution model
(``lib/local/LandmarkDetector/model/pdms/In-the-wild_aligned_PDM_68.txt``, Baltrusaitis et al.), as redistributed in
``assets/model.txt`` of yinguobing/head-pose-estimation (MIT license, Copyright (c) 2017 Yin Guobing), the model of
many head-pose tutorials; the values are copied unchanged (x, y, z in that file's axes, which are the camera axes
above for a frontal face: x to the image's right, y down, z away from the camera; the units are millimetres to a good
approximation, 91 mm between the outer eye corners). Note: OpenFace's own license is for academic, non-commercial use.

Face distances, on the iBUG 68-point indexing (0-based: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67),
all divided by the inter-ocular distance (``interocular``: between the outer eye corners 36 and 45, the 300-W
normalisation). They are ratios of distances in the aligned crop, so a similarity (the crop's alignment, the face's
size, in-plane roll) leaves them unchanged; out-of-plane rotation foreshortens them. Left and right are the
SUBJECT's: the subject's right eye is points 36-41 (on the image's left), their left eye 42-47.

- ``eye_open_left`` / ``eye_open_right``: mean distance between the upper and lower lid points (43-47, 44-46 /
  37-41, 38-40);
- ``mouth_open``: mean distance between the inner lips (61-67, 62-66, 63-65);
- ``mouth_width``: between the mouth corners 48 and 54;
- ``brow_raise_left`` / ``brow_raise_right``: between the centroid of the brow (22-26 / 17-21) and the centroid of
  the eye below it (42-47 / 36-41).

``interocular_px``: the inter-ocular distance itself in source-frame pixels (the face's size in the frame).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import least_squares

from extract.base import Extractor, FeatureArray
from extract.ingest import DecodedVideo
from extract.registry import register
from features_store.errors import UsageError
from features_store.schema import ArraySchema
from features_store.store import StoreError

MEAN_FACE_68_MM = np.array([
    [-73.393523, -29.801432, 47.667532], [-72.775014, -10.949766, 45.909403], [-70.533638, 7.929818, 44.842580],
    [-66.850058, 26.074280, 43.141114], [-59.790187, 42.564390, 38.635298], [-48.368973, 56.481080, 30.750622],
    [-34.121101, 67.246992, 18.456453], [-17.875411, 75.056892, 3.609035], [0.098749, 77.061286, -0.881698],
    [17.477031, 74.758448, 5.181201], [32.648966, 66.929021, 19.176563], [46.372358, 56.311389, 30.770570],
    [57.343480, 42.419126, 37.628629], [64.388482, 25.455880, 40.886309], [68.212038, 6.990805, 42.281449],
    [70.486405, -11.666193, 44.142567], [71.375822, -30.365191, 47.140426], [-61.119406, -49.361602, 14.254422],
    [-51.287588, -58.769795, 7.268147], [-37.804800, -61.996155, 0.442051], [-24.022754, -61.033399, -6.606501],
    [-11.635713, -56.686759, -11.967398], [12.056636, -57.391033, -12.051204], [25.106256, -61.902186, -7.315098],
    [38.338588, -62.777713, -1.022953], [51.191007, -59.302347, 5.349435], [60.053851, -50.190255, 11.615746],
    [0.653940, -42.193790, -13.380835], [0.804809, -30.993721, -21.150853], [0.992204, -19.944596, -29.284036],
    [1.226783, -8.414541, -36.948060], [-14.772472, 2.598255, -20.132003], [-7.180239, 4.751589, -23.536684],
    [0.555920, 6.562900, -25.944448], [8.272499, 4.661005, -23.695741], [15.214351, 2.643046, -20.858157],
    [-46.047290, -37.471411, 7.037989], [-37.674688, -42.730510, 3.021217], [-27.883856, -42.711517, 1.353629],
    [-19.648268, -36.754742, -0.111088], [-28.272965, -35.134493, -0.147273], [-38.082418, -34.919043, 1.476612],
    [19.265868, -37.032306, -0.665746], [27.894191, -43.342445, 0.247660], [37.437529, -43.110822, 1.696435],
    [45.170805, -38.086515, 4.894163], [38.196454, -35.532024, 0.282961], [28.764989, -35.484289, -1.172675],
    [-28.916267, 28.612716, -2.240310], [-17.533194, 22.172187, -15.934335], [-6.684590, 19.029051, -22.611355],
    [0.381001, 20.721118, -23.748437], [8.375443, 19.035460, -22.721995], [18.876618, 22.394109, -15.610679],
    [28.794412, 28.079924, -3.217393], [19.057574, 36.298248, -14.987997], [8.956375, 39.634575, -22.554245],
    [0.381549, 40.395647, -23.591626], [-7.428895, 39.836405, -22.406106], [-18.160634, 36.677899, -15.121907],
    [-24.377490, 28.677771, -4.785684], [-6.897633, 25.475976, -20.893742], [0.340663, 26.014269, -22.220479],
    [8.444722, 25.326198, -21.025520], [24.474473, 28.323008, -5.712776], [8.449166, 30.596216, -20.671489],
    [0.205322, 31.408738, -21.903670], [-7.198266, 30.844876, -20.328022],
])
"""(68, 3) x, y, z in mm of the generic face, iBUG order, in camera axes for a frontal upright face (see the module
docstring for its source and license)."""

MEAN_FACE_SOURCE = ("OpenFace In-the-wild_aligned_PDM_68 mean shape, as assets/model.txt of "
                    "yinguobing/head-pose-estimation (MIT); OpenFace itself: academic non-commercial license")

POSE_POINTS = {"all68": np.arange(68),
               "rigid": np.r_[27:36, 36, 39, 42, 45]}
"""Landmarks the pose is fitted to: all 68, or the ones expressions and speech hardly move (the nose and the eye
corners: 13 points)."""

COLUMNS = ("yaw_deg", "pitch_deg", "roll_deg", "pose_error_iod", "interocular_px", "eye_open_left", "eye_open_right",
           "mouth_open", "mouth_width", "brow_raise_left", "brow_raise_right")

RIGHT_EYE, LEFT_EYE = np.arange(36, 42), np.arange(42, 48)  # the subject's
RIGHT_BROW, LEFT_BROW = np.arange(17, 22), np.arange(22, 27)


@dataclass(frozen=True)
class FaceGeometryConfig:
    """``pose_points``: the landmarks the head pose is fitted to, ``"all68"`` or ``"rigid"`` (nose and eye corners,
    see :data:`POSE_POINTS`)."""

    pose_points: Literal["all68", "rigid"] = "all68"

    def __post_init__(self):
        if self.pose_points not in POSE_POINTS:
            raise UsageError(f"face_geometry: pose_points must be one of {', '.join(POSE_POINTS)}, "
                             f"not {self.pose_points!r}")


def frame_points(landmarks68: np.ndarray, align: np.ndarray) -> np.ndarray:
    """(T, 68, 2) crop-pixel landmarks taken back to source-frame pixels through the inverse of each frame's
    ``align`` (T, 2, 3) similarity (frames whose matrix is singular, i.e. zeros, give zeros)."""
    linear, shift = align[:, :, :2].astype(np.float64), align[:, :, 2].astype(np.float64)
    determinant = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
    invertible = np.abs(determinant) > 1e-12
    inverse = np.zeros_like(linear)
    inverse[invertible] = np.linalg.inv(linear[invertible])
    return np.einsum("tij,tnj->tni", inverse, landmarks68.astype(np.float64) - shift[:, None, :])


def face_distances(points: np.ndarray) -> np.ndarray:
    """(T, 68, 2) points (any similarity of them gives the same) -> (T, 7) inter-ocular distance (in the points'
    units), then eye_open_left, eye_open_right, mouth_open, mouth_width, brow_raise_left, brow_raise_right in
    inter-ocular distances (see the module docstring)."""
    points = np.asarray(points, np.float64)

    def distance(a, b) -> np.ndarray:
        return np.linalg.norm(points[:, a] - points[:, b], axis=-1)

    interocular = distance(36, 45)
    ratios = np.stack([
        distance([43, 44], [47, 46]).mean(axis=1),
        distance([37, 38], [41, 40]).mean(axis=1),
        distance([61, 62, 63], [67, 66, 65]).mean(axis=1),
        distance(48, 54),
        np.linalg.norm(points[:, LEFT_BROW].mean(axis=1) - points[:, LEFT_EYE].mean(axis=1), axis=-1),
        np.linalg.norm(points[:, RIGHT_BROW].mean(axis=1) - points[:, RIGHT_EYE].mean(axis=1), axis=-1),
    ], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.concatenate([interocular[:, None], ratios / interocular[:, None]], axis=1)


def rotation(pitch: float, yaw: float, roll: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` (radians; the module docstring's convention) and its derivatives by
    pitch, yaw and roll."""
    cp, sp, cy, sy, cr, sr = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])  # Rx(-pitch)
    ry = np.array([[cy, 0.0, -sy], [0.0, 1.0, 0.0], [sy, 0.0, cy]])  # Ry(-yaw)
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])  # Rz(roll)
    drx = np.array([[0.0, 0.0, 0.0], [0.0, -sp, cp], [0.0, -cp, -sp]])
    dry = np.array([[-sy, 0.0, -cy], [0.0, 0.0, 0.0], [cy, 0.0, -sy]])
    drz = np.array([[-sr, -cr, 0.0], [cr, -sr, 0.0], [0.0, 0.0, 0.0]])
    rzy = rz @ ry
    return rzy @ rx, (rzy @ drx, rz @ dry @ rx, drz @ ry @ rx)


def euler_angles(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 3) pitch, yaw, roll in radians (yaw in [-pi/2, pi/2]), the inverse of
    :func:`rotation`."""
    yaw = np.arcsin(np.clip(matrix[..., 2, 0], -1.0, 1.0))
    pitch = -np.arctan2(matrix[..., 2, 1], matrix[..., 2, 2])
    roll = np.arctan2(matrix[..., 1, 0], matrix[..., 0, 0])
    return np.stack([pitch, yaw, roll], axis=-1)


def weak_perspective(normalised: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Closed-form starting poses: (T, N, 2) image points in normalised camera coordinates ((pixel - centre) /
    focal) of the (N, 3) ``model`` -> (T, 6) pitch, yaw, roll (radians) and translation (mm). The affine camera
    fitted by least squares is made a scaled rotation (its 2 x 3 part's nearest orthonormal rows, mean singular
    value as the scale); the model's centroid lies at depth focal / scale on the ray through the points' centroid."""
    centre = model.mean(axis=0)
    spread = np.linalg.pinv(model - centre)  # (3, N)
    mean = normalised.mean(axis=1)
    affine = np.einsum("in,tnj->tji", spread, normalised - mean[:, None, :])  # (T, 2, 3)
    u, singular, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt
    matrix = np.concatenate([rows, np.cross(rows[:, 0], rows[:, 1])[:, None, :]], axis=1)
    depth = 1.0 / singular.mean(axis=1)
    translation = np.concatenate([mean * depth[:, None], depth[:, None]], axis=1) - matrix @ centre
    return np.concatenate([euler_angles(matrix), translation], axis=1)


class PoseProblem:
    """The reprojection residuals of one frame's points (N, 2), pixels, for pose parameters (pitch, yaw, roll in
    radians, translation in mm), and their Jacobian."""

    def __init__(self, model: np.ndarray, focal_px: float, centre_px: np.ndarray):
        self.model, self.focal, self.centre = model, focal_px, centre_px
        self.observed = np.zeros((len(model), 2))

    def project(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        matrix, derivatives = rotation(*params[:3])
        camera = self.model @ matrix.T + params[3:]
        return camera, derivatives

    def residuals(self, params: np.ndarray) -> np.ndarray:
        camera, _ = self.project(params)
        pixels = self.focal * camera[:, :2] / camera[:, 2:3] + self.centre
        return (pixels - self.observed).ravel()

    def jacobian(self, params: np.ndarray) -> np.ndarray:
        camera, derivatives = self.project(params)
        d_camera = np.empty((len(camera), 3, 6))  # d camera point / d (pitch, yaw, roll, translation)
        d_camera[:, :, :3] = np.einsum("nj,kij->nik", self.model, np.asarray(derivatives))
        d_camera[:, :, 3:] = np.eye(3)
        # pixel = focal * (x, y) / z + centre
        inverse_depth = self.focal / camera[:, 2:3]
        ratio = camera[:, :2] / camera[:, 2:3]
        d_pixel = inverse_depth[:, :, None] * (d_camera[:, :2] - ratio[:, :, None] * d_camera[:, 2:3])
        return d_pixel.reshape(-1, 6)


def solve_poses(points: np.ndarray, valid: np.ndarray, width: int, height: int,
                pose_points: str = "all68") -> tuple[np.ndarray, np.ndarray]:
    """Head poses of the (T, 68, 2) source-frame ``points`` of the ``valid`` frames in a ``width`` x ``height``
    frame: (T, 3) pitch, yaw, roll in degrees and (T,) RMS reprojection error in pixels (zeros where not valid)."""
    index = POSE_POINTS[pose_points]
    model = MEAN_FACE_68_MM[index]
    focal, centre = float(width), np.array([width / 2.0, height / 2.0])
    angles, error = np.zeros((len(points), 3)), np.zeros(len(points))
    rows = np.flatnonzero(valid)
    if not len(rows):
        return angles, error
    observed = np.asarray(points, np.float64)[rows][:, index]
    starts = weak_perspective((observed - centre) / focal, model)
    problem = PoseProblem(model, focal, centre)
    previous_row, previous = -2, None
    for k, row in enumerate(rows):
        problem.observed = observed[k]
        start = starts[k]
        if previous is not None and previous_row == row - 1 and (
                np.sum(problem.residuals(previous) ** 2) < np.sum(problem.residuals(start) ** 2)):
            start = previous
        fit = least_squares(problem.residuals, start, jac=problem.jacobian, method="lm")
        params = fit.x if fit.x[5] > 0 and np.isfinite(fit.cost) else start  # never a face behind the camera
        angles[row] = np.degrees(euler_angles(rotation(*params[:3])[0]))
        error[row] = np.sqrt(np.mean(problem.residuals(params) ** 2) * 2)
        previous_row, previous = row, params
    return angles, error


def face_geometry(landmarks68: np.ndarray, align: np.ndarray, valid: np.ndarray, width: int, height: int,
                  pose_points: str = "all68") -> np.ndarray:
    """The (T, len(COLUMNS)) float32 ``face_geometry`` rows (see the module docstring) from ``face_crop``'s arrays:
    ``landmarks68`` (T, 68, 2) crop pixels, ``align`` (T, 2, 3) source -> crop similarity, ``valid`` (T,) bool, in a
    ``width`` x ``height`` source frame; zeros where ``valid`` is False."""
    valid = np.asarray(valid, bool)
    points = frame_points(np.asarray(landmarks68), np.asarray(align))
    distances = face_distances(points)
    interocular = distances[:, 0]
    bad = np.flatnonzero(valid & ~(interocular > 1e-6))
    if len(bad):
        raise StoreError(f"face_geometry: frames {bad[:5].tolist()} are face_valid but their landmarks68 / "
                         "face_align give no inter-ocular distance; re-extract face_crop (--overwrite)")
    angles, error = solve_poses(points, valid, width, height, pose_points)
    pitch, yaw, roll = angles.T
    with np.errstate(divide="ignore", invalid="ignore"):
        error_iod = error / interocular
    table = np.column_stack([yaw, pitch, roll, error_iod, distances])
    table[~valid] = 0.0
    return table.astype(np.float32)


@register
class FaceGeometry(Extractor):
    """Head pose and face distances per frame from ``face_crop``'s landmarks (see the module docstring)."""

    name = "face_geometry"
    version = "1"
    config_class = FaceGeometryConfig
    libraries = ("numpy", "scipy")
    requires = ("face_crop",)

    def parameters(self) -> dict[str, Any]:
        return {**super().parameters(), "model_3d": MEAN_FACE_SOURCE,
                "camera": "focal length = frame width px, principal point = frame centre, no distortion",
                "angles": "R = Rz(roll) Ry(-yaw) Rx(-pitch), camera x right, y down, z forward; yaw > 0 subject "
                          "turns to their left, pitch > 0 looks up, roll > 0 head tilts to their left shoulder",
                "interocular": "outer eye corners 36-45; left/right are the subject's"}

    def extract(self, video: DecodedVideo, inputs: Mapping[str, Any] | None = None) -> dict[str, FeatureArray]:
        missing = [name for name in ("landmarks68", "face_align", "face_valid") if name not in (inputs or {})]
        if missing:
            raise StoreError(f"{video.path.name}: face_geometry needs face_crop's {', '.join(missing)} (face_crop "
                             "version 3 writes face_align); re-extract face_crop (--overwrite)")
        table = face_geometry(np.asarray(inputs["landmarks68"][...]), np.asarray(inputs["face_align"][...]),
                              np.asarray(inputs["face_valid"][...]), video.width, video.height,
                              self.config.pose_points)
        return {"face_geometry": FeatureArray(table, ArraySchema(
            validity="face_valid", columns=COLUMNS,
            units="degrees (yaw, pitch, roll), source-frame pixels (interocular_px), inter-ocular distances (others)",
            description="head pose of a generic 3D face fitted to the 68 landmarks, and lid, lip and brow distances"),
            {"input": "landmarks68 and face_align of face_crop", "left_right": "the subject's"})}
