"""Face detection (MTCNN from its wheel) on real media, the IoU tracker and subject selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from extract.faces.align import align_crop, apply, similarity, template
from extract.faces.detect import FrameFaces, MtcnnConfig, MtcnnDetector
from extract.faces.landmarks import landmark_mask, landmarks68_in_crop
from extract.faces.track import iou, subject, track_faces
from extract.ingest import decode_video
from extract.run import run_extraction
from features_store import FeatureStore
from features_store.verify import verify_video
from media_factory import write_frames, write_video

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def rgb_frames(path: Path) -> list[np.ndarray]:
    """Every decoded frame of ``path`` as (H, W, 3) uint8 RGB, through the project's own ingest."""
    frames = []
    decode_video(path, frame_sink=lambda index, time_s, frame: frames.append(frame.to_ndarray(format="rgb24")))
    return frames


def detect_all(detector: MtcnnDetector, frames: list[np.ndarray]) -> list[FrameFaces]:
    size = detector.batch_frames
    return [faces for start in range(0, len(frames), size) for faces in detector.detect(frames[start:start + size])]


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector()


@pytest.fixture(scope="module")
def crema_frames() -> list[np.ndarray]:
    return rgb_frames(SAMPLES / "crema_d_1001_DFA_concat.mp4")


@pytest.fixture(scope="module")
def grid_frames() -> list[np.ndarray]:
    return rgb_frames(SAMPLES / "grid_id2_vcd_swwp2s.mpg")


def test_one_face_is_found_in_nearly_every_sample_frame(detector, crema_frames, grid_frames):
    for frames in (crema_frames, grid_frames):
        faces = detect_all(detector, frames)
        found = np.mean([len(f) >= 1 for f in faces])
        assert found >= 0.98, found
        height, width = frames[0].shape[:2]
        for f in faces:
            if len(f):
                box = f.boxes[np.argmax(f.scores)]
                assert 0 <= box[0] < box[2] <= width + 2 and 0 <= box[1] < box[3] <= height + 2
                eyes = f.landmarks5[np.argmax(f.scores), :2]
                assert np.all((eyes >= box[:2]) & (eyes <= box[2:]))  # landmarks in source pixels, inside the box


def test_the_shared_clips_have_a_face_in_nearly_every_frame(detector, shared_media):
    clips = sorted((shared_media / "grid").glob("*.mpg")) + sorted((shared_media / "crema_d").glob("*.flv"))
    assert len(clips) == 12
    for clip in clips:
        faces = detect_all(detector, rgb_frames(clip))
        assert np.mean([len(f) >= 1 for f in faces]) >= 0.98, clip.name


def test_a_video_without_a_face_has_no_detection_and_no_subject(detector, tmp_path):
    frames = rgb_frames(write_video(tmp_path / "ramps.mp4", 40, size=(320, 240)))
    faces = detect_all(detector, frames)
    assert all(len(f) == 0 for f in faces)
    chosen = subject(faces, track_faces(faces))
    assert not chosen.valid.any() and not chosen.box.any()


def test_two_people_keep_their_sides_without_identity_flips(detector, crema_frames, grid_frames):
    """CREMA-D's speaker on the left, GRID's on the right (both real), side by side for 75 frames."""
    frames = [np.concatenate([crema[:288, :360], grid], axis=1) for crema, grid in zip(crema_frames, grid_frames)]
    faces = detect_all(detector, frames)
    tracks = track_faces(faces)
    assert sum(len(t.frames) >= 60 for t in tracks) == 2
    half = frames[0].shape[1] / 2
    for rule, on_left in (("left", True), ("right", False)):
        chosen = subject(faces, tracks, rule)
        assert chosen.valid.mean() >= 0.95
        centres = (chosen.box[chosen.valid, 0] + chosen.box[chosen.valid, 2]) / 2
        assert np.all((centres < half) == on_left), rule  # one person throughout: no flip to the other side
    largest = subject(faces, tracks, "largest")
    left = subject(faces, tracks, "left")
    areas = lambda s: np.prod(s.box[s.valid, 2:] - s.box[s.valid, :2], axis=1).mean()  # noqa: E731
    right = subject(faces, tracks, "right")
    assert areas(largest) == max(areas(left), areas(right))


def test_tracker_bridges_short_gaps_and_splits_far_jumps():
    def frame(*boxes):
        boxes = np.array(boxes, np.float32).reshape(-1, 4)
        return FrameFaces(boxes, np.ones(len(boxes), np.float32), np.zeros((len(boxes), 5, 2), np.float32))
    moving = [frame([10 + i, 10, 60 + i, 70]) for i in range(10)]
    faces = moving[:4] + [frame()] * 3 + moving[7:] + [frame([300, 10, 350, 70])]
    tracks = track_faces(faces, max_gap_frames=5)
    assert [t.frames for t in tracks] == [[0, 1, 2, 3, 7, 8, 9], [10]]
    assert track_faces(faces, max_gap_frames=2)[1].frames == [7, 8, 9]
    np.testing.assert_allclose(iou(np.array([0, 0, 10, 10.]), np.array([[5, 0, 15, 10.], [20, 20, 30, 30.]])),
                               [1 / 3, 0])


def test_similarity_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = template(112)
    moved = points @ (scale * rotation).T + shift
    matrix = similarity(points, moved)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(apply(matrix, points), moved, atol=1e-9)


def test_aligned_crops_put_the_eyes_on_the_template(detector, crema_frames, grid_frames):
    """Eyes of every aligned crop within 3 px of the template by the fit, and found near there again by MTCNN run on
    the crop itself (an independent check that the crop holds an upright, centred face; MTCNN's own landmarks jitter
    by a few pixels at this size, hence the looser bound)."""
    redetector = MtcnnDetector(MtcnnConfig(subsample=1, min_face_px=40))
    for frames in (crema_frames[::5], grid_frames[::3]):
        faces = detect_all(detector, frames)
        crops, residuals = [], []
        for frame, f in zip(frames, faces):
            best = int(np.argmax(f.scores))
            crop, matrix = align_crop(frame, f.landmarks5[best])
            assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
            residuals.append(np.linalg.norm(apply(matrix, f.landmarks5[best, :2]) - template(112)[:2], axis=1))
            crops.append(crop)
        assert np.max(residuals) <= 3.0, np.max(residuals)
        found = detect_all(redetector, crops)
        eyes = np.array([f.landmarks5[np.argmax(f.scores), :2] for f in found if len(f)])
        assert len(eyes) >= 0.98 * len(crops)
        error = np.linalg.norm(eyes - template(112)[:2], axis=2)
        assert np.median(error) <= 5.0 and np.percentile(error, 95) <= 10.0, error


def test_landmarks68_in_the_crop_and_the_tsav_mask(detector, crema_frames):
    frames = crema_frames[::20]
    faces = detect_all(detector, frames)
    for frame, f in zip(frames, faces):
        best = int(np.argmax(f.scores))
        crop, matrix = align_crop(frame, f.landmarks5[best])
        points = landmarks68_in_crop(frame, f.boxes[best], matrix)
        assert points.shape == (68, 2) and points.dtype == np.float32
        assert np.all((points[17:] > 0) & (points[17:] < 112))  # brows, eyes, nose, mouth inside the crop
        assert np.all((points[:17] > -20) & (points[:17] < 140))  # the jaw line may run past ArcFace's tight crop
        eyes = np.stack([points[36:42].mean(axis=0), points[42:48].mean(axis=0)])  # dlib's eyes, independent of MTCNN
        assert np.linalg.norm(eyes - template(112)[:2], axis=1).max() <= 6.0
        mask = landmark_mask(points)
        assert mask.shape == (112, 112) and mask.dtype == np.uint8
        levels = set(np.unique(mask).tolist())
        assert {0, 63, 127, 159, 191, 223, 255} <= levels <= {0, 31, 63, 127, 159, 191, 223, 255}  # chin may be cut
        assert (mask > 0).mean() < 0.1  # thin lines, not filled shapes
    one_line = landmark_mask(np.tile(np.array([[10.0, 50.0]]), (68, 1)) + np.arange(68)[:, None] * [1.0, 0.0])
    assert one_line[50, 58:70].tolist() == [255] * 12  # the mouth polyline 48..59 drawn at its grey level


def test_face_crop_feature_in_the_sample_store(sample_store):
    for video_id in sample_store.video_ids():
        video = sample_store.video(video_id)
        valid = video.read("face_valid")
        assert valid.mean() >= 0.98, (video_id, valid.mean())
        crops, boxes = video.read("face_crop"), video.read("face_box")
        assert crops.shape == (video.n_frames, 112, 112, 3) and crops.dtype == np.uint8
        assert video.array("face_crop").chunks[0] >= 28  # about 1 MB chunks along time
        assert crops[valid].mean() > 40 and not crops[~valid].any() and not boxes[~valid].any()
        assert video.read("landmarks68").shape == (video.n_frames, 68, 2)
        attrs = dict(video.array("face_crop").attrs)
        assert attrs["validity"] == "face_valid"
        weights = attrs["provenance"]["weights"]
        assert [w["file"] for w in weights["detector"]] == ["pnet.pt", "rnet.pt", "onet.pt"]
        assert len(weights["landmarks"]["sha256"]) == 64
        assert weights["reidentification"]["file"] == "dlib_face_recognition_resnet_model_v1.dat"


def test_a_video_without_faces_completes_with_face_valid_all_false(tmp_path):
    path = write_video(tmp_path / "no_face.mp4", 30, size=(320, 240))
    report = run_extraction([path], str(tmp_path / "s.zarr"), ["face_crop"], progress=False)
    assert not report.failed
    video = FeatureStore(str(tmp_path / "s.zarr")).video("no_face")
    assert video.complete and not video.read("face_valid").any()
    assert not video.read("face_crop").any() and not video.read("face_mask").any()
    assert verify_video(video) == []


def test_two_person_video_extracts_left_and_right_groups(crema_frames, grid_frames, tmp_path):
    frames = [np.concatenate([crema[:288, :360], grid], axis=1) for crema, grid in zip(crema_frames, grid_frames)]
    video = write_frames(tmp_path / "two people.mp4", frames)
    store = str(tmp_path / "two.zarr")
    for rule in ("left", "right", "largest"):
        assert not run_extraction([video], store, ["face_crop"], progress=False, subject=rule).failed
    opened = FeatureStore(store)
    assert opened.video_ids() == ["two_people", "two_people_left", "two_people_right"]
    half = frames[0].shape[1] / 2
    for video_id, on_left in (("two_people_left", True), ("two_people_right", False)):
        group = opened.video(video_id)
        assert group.attrs["subject"] == video_id.rsplit("_", 1)[1]
        valid, box = group.read("face_valid"), group.read("face_box")
        assert valid.mean() >= 0.95 and np.all(((box[valid, 0] + box[valid, 2]) / 2 < half) == on_left)
    largest = opened.video("two_people")
    centres = (largest.read("face_box")[:, 0] + largest.read("face_box")[:, 2]) / 2
    sides = centres[largest.read("face_valid")] < half
    assert sides.all() or not sides.any()  # one person throughout, no identity flip
