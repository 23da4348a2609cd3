"""``face_geometry``: head pose recovered from faces rendered at known poses, face distances on hand-placed points,
and the feature as the sample store holds it (real CREMA-D and GRID clips)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from extract import registry
from extract.faces.align import apply, similarity, template
from extract.faces.geometry import COLUMNS, MEAN_FACE_68_MM, FaceGeometry, FaceGeometryConfig, face_geometry
from extract.ingest import DecodedVideo
from features_store.errors import UsageError
from features_store.store import StoreError

WIDTH, HEIGHT = 640, 480
COLUMN = {name: k for k, name in enumerate(COLUMNS)}


def render(yaw: float, pitch: float, roll: float, translation_mm) -> np.ndarray:
    """(68, 2) source-frame pixels of the mean face at a pose (degrees, the documented convention written with
    scipy's rotations: R = Rz(roll) Ry(-yaw) Rx(-pitch)) seen by a 640 x 480 camera, focal length 640 px."""
    matrix = Rotation.from_euler("ZYX", [roll, -yaw, -pitch], degrees=True).as_matrix()
    camera = MEAN_FACE_68_MM @ matrix.T + np.asarray(translation_mm, float)
    return WIDTH * camera[:, :2] / camera[:, 2:] + [WIDTH / 2, HEIGHT / 2]


def to_crop(points: np.ndarray, size_px: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """As face_crop stores a face: the similarity putting the 5 points (eye centres, nose tip, mouth corners) on the
    crop template, and the 68 points in crop pixels."""
    five = np.stack([points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]])
    matrix = similarity(five, template(size_px))
    return apply(matrix, points).astype(np.float32), matrix.astype(np.float32)


def decoded(n_frames: int) -> DecodedVideo:
    return DecodedVideo(path=Path("rendered.mp4"), frame_time=np.arange(n_frames) / 25.0, width=WIDTH, height=HEIGHT,
                        fps_nominal=25.0, video_codec="h264", audio=None, audio_reason="rendered, no audio",
                        n_frames_without_timestamp=0)


@pytest.fixture(scope="module")
def rendered():
    """A grid of 45 poses (yaw +-30, pitch +-20, roll +-15) at varied places and distances, landmarks jittered by
    0.5 px, with two frames without a face in between."""
    rng = np.random.default_rng(7)
    poses = np.array(list(itertools.product((-30, -15, 0, 15, 30), (-20, 0, 20), (-15, 0, 15))), float)
    crops, aligns = [], []
    for yaw, pitch, roll in poses:
        shift = [rng.uniform(-120, 120), rng.uniform(-80, 80), rng.uniform(500, 1100)]
        points = render(yaw, pitch, roll, shift) + rng.normal(0, 0.5, (68, 2))
        crop, matrix = to_crop(points)
        crops.append(crop)
        aligns.append(matrix)
    landmarks68, align = np.stack(crops), np.stack(aligns)
    valid = np.ones(len(poses), bool)
    for row in (4, 20):  # no face here: zeros, as face_crop stores them
        valid[row], landmarks68[row], align[row] = False, 0, 0
    return poses, landmarks68, align, valid


def test_rendered_poses_are_recovered_within_3_degrees(rendered):
    poses, landmarks68, align, valid = rendered
    inputs = {"landmarks68": landmarks68, "face_align": align, "face_valid": valid}
    output = FaceGeometry().extract(decoded(len(poses)), inputs)["face_geometry"]
    table = output.data
    assert table.shape == (len(poses), len(COLUMNS)) and table.dtype == np.float32
    assert output.schema.columns == COLUMNS and output.schema.validity == "face_valid"
    assert not table[~valid].any()
    recovered = table[valid][:, [COLUMN["yaw_deg"], COLUMN["pitch_deg"], COLUMN["roll_deg"]]]
    error = np.abs(recovered - poses[valid])
    assert error.max() < 3.0, (error.max(axis=0), poses[valid][error.max(axis=1).argmax()])
    assert np.median(table[valid, COLUMN["pose_error_iod"]]) < 0.02  # 0.5 px jitter on ~60-120 px between the eyes


def test_pose_from_the_rigid_points_alone():
    poses = np.array([[30, 0, 0], [-30, 20, 15], [15, -20, -15], [0, 0, 0]], float)
    crops, aligns = zip(*(to_crop(render(*pose, [40, -30, 700])) for pose in poses))
    table = face_geometry(np.stack(crops), np.stack(aligns), np.ones(len(poses), bool), WIDTH, HEIGHT, "rigid")
    np.testing.assert_allclose(table[:, :3], poses, atol=0.1)
    with pytest.raises(UsageError, match="pose_points must be one of all68, rigid"):
        FaceGeometryConfig(pose_points="jaw")


def test_angle_signs_follow_the_documented_directions():
    """The words of the docstring, checked on the rendered image (not through the solver's own matrices)."""
    frontal = render(0, 0, 0, [0, 0, 800])
    turned_left, looking_up, tilted = render(20, 0, 0, [0, 0, 800]), render(0, 20, 0, [0, 0, 800]), render(
        0, 0, 12, [0, 0, 800])

    def nose_from_eyes(points):
        return points[30] - (points[36] + points[45]) / 2

    assert nose_from_eyes(turned_left)[0] > nose_from_eyes(frontal)[0] + 10  # the nose moves to the image's right
    assert nose_from_eyes(looking_up)[1] < nose_from_eyes(frontal)[1] - 10  # the nose moves up the image
    assert tilted[45, 1] > tilted[36, 1] + 10  # the subject's left eye (image right) drops: clockwise on screen
    crops, aligns = zip(*(to_crop(points) for points in (turned_left, looking_up, tilted)))
    table = face_geometry(np.stack(crops), np.stack(aligns), np.ones(3, bool), WIDTH, HEIGHT)
    np.testing.assert_allclose(table[:, :3], [[20, 0, 0], [0, 20, 0], [0, 0, 12]], atol=0.1)


def test_face_distances_on_hand_placed_points():
    """Points placed so each ratio is known, then seen through two similarities (the ratios stay, the inter-ocular
    distance in source pixels follows the scale)."""
    points = render(0, 0, 0, [0, 0, 800])
    points = (points - points[36]) * (100 / np.linalg.norm(points[45] - points[36]))  # 36 at 0, 45 at 100
    points[45] = [100, 0]
    points[[37, 41, 38, 40]] = [[10, -4], [10, 4], [20, -6], [20, 6]]  # subject's right eye: lids 8 and 12 apart
    points[[43, 47, 44, 46]] = [[80, -3], [80, 3], [90, -5], [90, 5]]  # subject's left eye: 6 and 10
    points[[61, 67, 62, 66, 63, 65]] = [[40, 90], [40, 92], [50, 90], [50, 94], [60, 90], [60, 96]]  # 2, 4, 6
    points[48], points[54] = [15, 100], [85, 100]
    for brow, eye, height in ((range(17, 22), range(36, 42), 30), (range(22, 27), range(42, 48), 25)):
        centre = points[list(eye)].mean(axis=0)
        points[list(brow)] = centre + np.column_stack([np.arange(-10, 11, 5), np.full(5, -height)])
    expected = {"eye_open_right": 0.10, "eye_open_left": 0.08, "mouth_open": 0.04, "mouth_width": 0.70,
                "brow_raise_right": 0.30, "brow_raise_left": 0.25}
    crops, aligns, sizes = [], [], []
    for scale, angle, shift in ((1.2, 0.0, (260, 180)), (2.5, 0.4, (200, 120))):
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        crop, matrix = to_crop(points @ (scale * turn).T + shift)
        crops.append(crop)
        aligns.append(matrix)
        sizes.append(100 * scale)
    table = face_geometry(np.stack(crops), np.stack(aligns), np.ones(2, bool), WIDTH, HEIGHT)
    np.testing.assert_allclose(table[:, COLUMN["interocular_px"]], sizes, rtol=1e-4)
    for name, value in expected.items():
        np.testing.assert_allclose(table[:, COLUMN[name]], value, atol=1e-4, err_msg=name)


def test_face_geometry_needs_face_crops_alignment():
    assert registry.with_requirements(["face_geometry"]) == ["face_crop", "face_geometry"]
    inputs = {"landmarks68": np.zeros((3, 68, 2), np.float32), "face_valid": np.zeros(3, bool)}
    with pytest.raises(StoreError, match="face_align.*re-extract face_crop"):
        FaceGeometry().extract(decoded(3), inputs)


def test_sample_store_geometry_is_plausible_on_real_talking_heads(sample_store):
    for video_id in ("crema_d_1001_DFA_concat", "grid_id2_vcd_swwp2s"):
        video = sample_store.video(video_id)
        table, valid = video.read("face_geometry"), video.read("face_valid")
        attrs = dict(video.array("face_geometry").attrs)
        assert table.shape == (video.n_frames, len(COLUMNS)) and table.dtype == np.float32
        assert attrs["columns"] == list(COLUMNS) and attrs["validity"] == "face_valid"
        assert attrs["provenance"]["feature"] == "face_geometry" and attrs["provenance"]["version"] == "1"
        assert not table[~valid].any() and valid.mean() > 0.9, video_id
        faces = table[valid]
        assert np.isfinite(faces).all()
        column = {name: faces[:, k] for name, k in COLUMN.items()}
        frontal = ((np.abs(column["yaw_deg"]) < 45) & (np.abs(column["pitch_deg"]) < 45)
                   & (np.abs(column["roll_deg"]) < 30))
        assert frontal.mean() > 0.9, (video_id, np.median(faces[:, :3], axis=0))
        assert (faces[:, :3].std(axis=0) < 5).all(), (video_id, faces[:, :3].std(axis=0))  # steady, no flips
        assert np.median(column["pose_error_iod"]) < 0.1, video_id
        for eye in ("eye_open_left", "eye_open_right"):
            assert 0.02 < np.median(column[eye]) < 0.25, (video_id, eye, np.median(column[eye]))
        for brow in ("brow_raise_left", "brow_raise_right"):
            assert 0.1 < np.median(column[brow]) < 0.5, (video_id, brow, np.median(column[brow]))  # mean face: 0.22
        assert 0.3 < np.median(column["mouth_width"]) < 0.9, video_id
        assert (column["mouth_open"] >= 0).all() and np.median(column["mouth_open"]) < 0.5, video_id
        if video_id.startswith("grid"):
            assert column["mouth_open"].std() > 0.02, column["mouth_open"].std()  # the talker's lips move
