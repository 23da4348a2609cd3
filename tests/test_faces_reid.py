"""Shot cuts, re-identification of the subject across them, M3T's landmark smoothing and 128 px crops, on the real
sample clips (and an edit of them made with PyAV)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from extract import registry
from extract.faces.align import template
from extract.faces.shots import frame_signature, shot_cuts
from extract.faces.smoothing import smooth_landmarks
from extract.faces.track import subject, track_faces
from extract.ingest import decode_video, iter_rgb_frames
from extract.run import run_extraction
from features_store import FeatureStore
from features_store.verify import verify_video
from media_factory import write_frames

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
A_FRAMES, B_FRAMES = 30, 40  # A (GRID) 30 frames, then B (CREMA-D) 40, then A again 30


@pytest.fixture(scope="module")
def grid_frames() -> list[np.ndarray]:
    return list(iter_rgb_frames(SAMPLES / "grid_id2_vcd_swwp2s.mpg"))


@pytest.fixture(scope="module")
def edited_video(grid_frames, tmp_path_factory) -> Path:
    """Person A, a cut to person B at the same place in the frame, a cut back to A: B is on screen longer than
    either of A's shots, A longer in all."""
    crema = [frame[:288, :360] for frame in iter_rgb_frames(SAMPLES / "crema_d_1001_DFA_concat.mp4")]
    frames = grid_frames[:A_FRAMES] + crema[:B_FRAMES] + grid_frames[A_FRAMES:2 * A_FRAMES]
    return write_frames(tmp_path_factory.mktemp("media") / "a_b_a.mp4", frames)


def test_shot_cuts_are_found_at_the_edits_and_nowhere_else(edited_video):
    signatures = np.stack([frame_signature(frame) for frame in iter_rgb_frames(edited_video)])
    assert np.flatnonzero(shot_cuts(signatures)).tolist() == [A_FRAMES, A_FRAMES + B_FRAMES]


def test_the_subject_is_reidentified_across_shot_cuts(edited_video):
    extractor = registry.create("face_crop")
    video = decode_video(edited_video)
    faces, cuts = extractor.detect(video)
    tracks = track_faces(faces, cuts=cuts)
    assert len(tracks) == 3  # the cuts end the tracks, though B's face sits where A's was
    people = extractor.people(video, faces, tracks)
    assert sorted(map(sorted, people)) == [[0, 2], [1]]
    chosen = subject(faces, tracks, "largest", people)
    a_frames = np.r_[0:A_FRAMES, A_FRAMES + B_FRAMES:2 * A_FRAMES + B_FRAMES]
    assert chosen.valid[a_frames].mean() >= 0.98 and not chosen.valid[A_FRAMES:A_FRAMES + B_FRAMES].any()
    alone = subject(faces, tracks, "largest")  # without re-identification B's single shot would win
    assert alone.valid[A_FRAMES:A_FRAMES + B_FRAMES].all() and not alone.valid[a_frames].any()


def test_smoothing_steadies_landmarks_only_where_the_box_is_steady():
    rng = np.random.default_rng(0)
    n = 60
    truth = np.tile(np.array([[40, 50], [70, 50], [55, 65], [45, 80], [65, 80]], np.float64), (n, 1, 1))
    noisy = (truth + rng.normal(0, 1.0, truth.shape)).astype(np.float32)
    boxes = np.tile(np.array([20, 20, 100, 110], np.float32), (n, 1))
    boxes[40:] += np.arange(20, dtype=np.float32)[:, None] * 8  # the head moves fast from frame 40 on
    track = np.zeros(n, int)
    track[20:] = 1  # a new track (a cut) at frame 20: windows must not cross it
    smoothed = smooth_landmarks(noisy, boxes, track, sigma_frames=1.0, steady_box_std=0.03)
    steady = slice(0, 38)
    assert np.abs(smoothed[steady] - truth[steady]).mean() < 0.75 * np.abs(noisy[steady] - truth[steady]).mean()
    np.testing.assert_array_equal(smoothed[41:], noisy[41:])  # moving: as detected
    shifted = noisy.copy()
    shifted[20:] += 30  # another person's landmarks after the cut must not leak into frame 19
    np.testing.assert_allclose(smooth_landmarks(shifted, boxes, track)[:20], smoothed[:20], atol=1e-5)
    np.testing.assert_array_equal(smooth_landmarks(noisy, boxes, track, sigma_frames=0), noisy)


def test_128px_crops_put_the_face_on_the_scaled_template():
    """M3T's 128 x 128 crops: every face array at 128 px, dlib's eye centres within 3 px (scaled) of the template."""
    video = decode_video(SAMPLES / "grid_id2_vcd_swwp2s.mpg")
    out = registry.create("face_crop", overrides={"crop_size_px": 128}).extract(video)
    assert out["face_crop"].data.shape == (75, 128, 128, 3) and out["face_mask"].data.shape == (75, 128, 128)
    crops = np.concatenate(list(out["face_crop"].data.blocks))  # streamed: pass 2 runs now, as the store writes
    masks = np.concatenate(list(out["face_mask"].data.blocks))
    assert crops.shape == (75, 128, 128, 3) and masks.shape == (75, 128, 128)
    valid = out["face_valid"].data
    assert crops[valid].any(axis=(1, 2, 3)).all() and not crops[~valid].any()
    assert valid.mean() >= 0.98
    points = out["landmarks68"].data[valid]
    eyes = np.stack([points[:, 36:42].mean(axis=1), points[:, 42:48].mean(axis=1)], axis=1)
    assert np.median(np.linalg.norm(eyes - template(128)[:2], axis=2)) <= 3.0 * 128 / 112
    assert masks[valid].max(axis=(1, 2)).min() == 255  # the mouth outline is drawn in every crop


def test_redoing_face_crop_redoes_the_features_built_on_it(tmp_path):
    """128 px crops replacing 112 px ones (--overwrite) must not leave fer computed from the old crops: redone when
    asked for in the same run, removed when not."""
    clip, store = SAMPLES / "grid_id2_vcd_swwp2s.mpg", str(tmp_path / "s.zarr")
    assert not run_extraction([clip], store, ["fer"], progress=False).failed
    before = dict(FeatureStore(store).video("grid_id2_vcd_swwp2s").array("fer").attrs)["provenance"]["created_utc"]
    settings = {"face_crop": {"crop_size_px": 128}}
    report = run_extraction([clip], store, ["fer"], progress=False, settings=settings)
    assert "another version or parameters; pass --overwrite" in report.failed[str(clip)]
    time.sleep(1.1)  # provenance times have one-second resolution
    assert not run_extraction([clip], store, ["fer"], progress=False, settings=settings, overwrite=True).failed
    video = FeatureStore(store).video("grid_id2_vcd_swwp2s")
    assert video.read("face_crop").shape[1:] == (128, 128, 3)
    assert dict(video.array("fer").attrs)["provenance"]["created_utc"] > before
    # redoing face_crop alone removes what was computed from the old crops, and the group still checks out
    assert not run_extraction([clip], store, ["face_crop"], progress=False, overwrite=True).failed
    video = FeatureStore(store).video("grid_id2_vcd_swwp2s")
    assert video.read("face_crop").shape[1:] == (112, 112, 3) and video.complete
    assert "fer" not in video.array_names() and "fer_features" not in video.array_names()
    assert verify_video(video) == []
