"""Windows, features per modality, standardisation and folds over a real store (samples/ extracted once)."""

from __future__ import annotations

import numpy as np
import pytest

from eval.tasks import expr_task
from train.features import FeatureError, StoreFeatures
from train.folds import make_folds
from train.windows import WindowBatches, WindowConfig, sliding_starts

CREMA = "crema_d_1001_DFA_concat"
GRID = "grid_id2_vcd_swwp2s"


def test_sliding_windows_cover_every_frame_with_a_tail_window():
    assert sliding_starts(1000, 300, 200) == [0, 200, 400, 600, 700]
    assert sliding_starts(900, 300, 200) == [0, 200, 400, 600]
    assert sliding_starts(120, 300, 200) == [0]
    for n_frames in (1, 299, 300, 301, 777):
        covered = np.zeros(n_frames, bool)
        for start in sliding_starts(n_frames, 300, 200):
            covered[start:start + 300] = True
        assert covered.all()


@pytest.fixture(scope="module")
def features(sample_store) -> StoreFeatures:
    return StoreFeatures(sample_store, ["logmel", "mfcc_mel"], [CREMA, GRID])


def test_features_are_grouped_by_modality(features, sample_store):
    assert features.modalities == {"audio": ["logmel", "mfcc_mel"]}
    assert features.modality_dims == {"audio": 200 + 168}
    assert features.n_frames == {CREMA: 379, GRID: 75}
    with pytest.raises(FeatureError, match="mel64.*per-frame"):
        StoreFeatures(sample_store, ["mel64"], [CREMA])
    with pytest.raises(FeatureError, match="no feature 'vggish'"):
        StoreFeatures(sample_store, ["vggish"], [CREMA])


def test_standardisation_uses_training_videos_only(features, sample_store):
    standardiser = features.fit_standardiser([CREMA])
    rows = features.rows(CREMA, 0, 379)["audio"]
    valid = sample_store.video(CREMA).read("audio_valid")
    assert rows.dtype == np.float32 and rows.shape == (379, 368)
    np.testing.assert_allclose(rows[valid].mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(rows[valid].std(axis=0)[standardiser.std["audio"] != 1], 1, atol=1e-3)
    raw = np.concatenate([sample_store.video(GRID).read("logmel"), sample_store.video(GRID).read("mfcc_mel")], 1)
    expected = (raw - standardiser.mean["audio"]) / standardiser.std["audio"]
    np.testing.assert_allclose(features.rows(GRID, 10, 20)["audio"], expected[10:20], rtol=1e-5, atol=1e-5)


def test_reading_per_window_equals_reading_into_ram(features, sample_store):
    lazy = StoreFeatures(sample_store, ["logmel", "mfcc_mel"], [CREMA, GRID], in_memory=False)
    lazy.use_standardiser(features.fit_standardiser([CREMA, GRID]))
    np.testing.assert_array_equal(lazy.rows(CREMA, 100, 250)["audio"], features.rows(CREMA, 100, 250)["audio"])
    for names in (["logmel"], ["logmel", "mfcc_mel"]):  # read straight into the batch, or column by column
        batches = []
        for in_memory in (True, False):
            source = StoreFeatures(sample_store, names, [CREMA, GRID], in_memory=in_memory)
            source.fit_standardiser([CREMA, GRID])
            batches.append(next(WindowBatches(source, [CREMA, GRID], WindowConfig(64, 50), 16).batches()))
        np.testing.assert_array_equal(batches[0].inputs["audio"], batches[1].inputs["audio"])


def test_batches_pad_short_videos_and_mask_labels(features):
    features.fit_standardiser([CREMA, GRID])
    task = expr_task()
    labels = {CREMA: {"expr": np.arange(379) % 3}, GRID: {"expr": np.full(75, -1)}}
    masks = {vid: {"expr": task.valid(by_task["expr"])} for vid, by_task in labels.items()}
    batches = WindowBatches(features, [CREMA, GRID], WindowConfig(300, 200), batch_size=8, labels=labels,
                            label_masks=masks)
    assert [(w.video_id, w.start, w.stop) for w in batches.windows()] == [(CREMA, 0, 300), (CREMA, 79, 379),
                                                                         (GRID, 0, 75)]
    (batch,) = list(batches.batches())
    assert batch.inputs["audio"].shape == (3, 300, 368)
    assert batch.frame_mask[2, :75].all() and not batch.frame_mask[2, 75:].any()
    assert not batch.inputs["audio"][2, 75:].any()
    assert not batch.label_masks["expr"][2].any()  # GRID's labels are all invalid
    np.testing.assert_array_equal(batch.labels["expr"][1], np.arange(79, 379) % 3)
    assert batch.labels["expr"].min() >= 0  # masked frames hold a valid class index


def test_random_windows_are_reproducible_per_epoch(features):
    config = WindowConfig(32, 16, "random", random_windows_per_video=4)
    batches = WindowBatches(features, [CREMA, GRID], config, batch_size=4, shuffle=True, seed=3)
    first, again, other = batches.windows(0), batches.windows(0), batches.windows(1)
    assert first == again and first != other and len(first) == 8
    assert all(w.stop - w.start == 32 and w.stop <= features.n_frames[w.video_id] for w in first)


def test_fold_zero_is_the_official_split_and_later_folds_hold_out_training_groups():
    videos = [f"v{i}" for i in range(10)] + ["w_left", "w_right"]
    official = {"va": {v: ("val" if v in ("v0", "v1") else "train") for v in videos}}
    folds = make_folds({"va": videos}, official, 6)
    assert folds[0].videos("val") == ["v0", "v1"]
    held_out = [set(f.videos("val")) for f in folds[1:]]
    assert set().union(*held_out) == set(videos) - {"v0", "v1"}
    assert all(len(h) in (2, 3) for h in held_out) and sum(map(len, held_out)) == 10
    assert any({"w_left", "w_right"} <= h for h in held_out)  # one subject never spans two folds
    for fold in folds[1:]:
        assert {"v0", "v1"} <= set(fold.videos("train"))


def test_folds_without_an_official_split_are_stable_and_disjoint():
    videos = [f"clip{i}" for i in range(7)]
    folds = make_folds({"expr": videos}, {"expr": {}}, 5)
    assert make_folds({"expr": videos}, {"expr": {}}, 5) == folds
    vals = [set(f.videos("val")) for f in folds]
    assert set().union(*vals) == set(videos) and sum(map(len, vals)) == 7
    (single,) = make_folds({"expr": ["only"]}, {"expr": {}}, 1)
    assert single.videos("train") == ["only"] and single.videos("val") == []
