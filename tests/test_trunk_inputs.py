"""The trunk networks' inputs cut from a real store: each frame's face clip and sub-spectrogram are the store's own rows
at the right frames (the clip ends on the frame, the sub-spectrogram's centre row is the frame's ``mel64_row``),
edges are zeros and marked invalid, and batches carry them beside the vector features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.clips import ClipError, ClipSpec, clip_frame_index
from train.features import FeatureError, StoreFeatures
from train.tricks import drop_modalities
from train.windows import WindowBatches, WindowConfig

VIDEO = "crema_d_1001_DFA_concat"
TSAV_CLIPS = ClipSpec(clip_frames=8, clip_dilation=6, spectrogram_rows=101)


def features(store, names, spec=TSAV_CLIPS, **kwargs) -> StoreFeatures:
    opened = StoreFeatures(store, names, [VIDEO], clips=spec, **kwargs)
    opened.fit_standardiser([VIDEO])
    return opened


def test_a_clip_ends_on_its_frame_with_the_mask_as_fourth_channel(sample_store):
    video = sample_store.video(VIDEO)
    crops, masks, valid = video.read("face_crop"), video.read("face_mask"), video.read("face_valid")
    inputs = features(sample_store, ["face_crop", "face_mask"])
    assert inputs.model_inputs == {"face_clip": (8, 112, 112, 4)}
    start, stop = 100, 140
    rows = inputs.rows(VIDEO, start, stop)
    clip, clip_valid = rows["face_clip"], rows["face_clip_valid"]
    assert clip.dtype == np.uint8 and clip.shape == (40, 8, 112, 112, 4)
    for offset in (0, 17, 39):
        frame = start + offset
        expected = [frame - 42 + 6 * k for k in range(8)]  # oldest first, the last is the frame itself
        np.testing.assert_array_equal(clip[offset, :, :, :, :3], crops[expected])
        np.testing.assert_array_equal(clip[offset, :, :, :, 3], masks[expected])
        np.testing.assert_array_equal(clip_valid[offset], valid[expected])
    assert valid[start:stop].all() and masks[start:stop].any()


def test_frames_before_the_video_are_zeros_and_invalid(sample_store):
    rows = features(sample_store, ["face_crop"]).rows(VIDEO, 0, 3)
    index = clip_frame_index(0, 3, 8, 6)
    assert (rows["face_clip_valid"] == (index >= 0) & sample_store.video(VIDEO).read("face_valid")[
        np.clip(index, 0, None)]).all()
    assert not rows["face_clip"][index < 0].any() and rows["face_clip"][~rows["face_clip_valid"]].max() == 0
    assert rows["face_clip"][2, -1].any()  # frame 2 itself is a face


@pytest.mark.parametrize("name", ["mel64", "mel64_fine"])
def test_a_sub_spectrogram_is_centred_on_the_frames_row(sample_store, name):
    video = sample_store.video(VIDEO)
    mel, row_of_frame, row_valid = video.read(name), video.read(f"{name}_row"), video.read(f"{name}_valid")
    rows = features(sample_store, [name]).rows(VIDEO, 0, video.n_frames)
    spectrogram, valid = rows["spectrogram"], rows["spectrogram_valid"]
    assert spectrogram.shape == (video.n_frames, 101, 64)
    np.testing.assert_array_equal(spectrogram[:, 50], mel[row_of_frame])  # the centre row is the frame's
    for frame in (0, 200, video.n_frames - 1):
        index = row_of_frame[frame] + np.arange(-50, 51)
        inside = (index >= 0) & (index < len(mel))
        np.testing.assert_array_equal(valid[frame], inside & row_valid[np.clip(index, 0, len(mel) - 1)])
        np.testing.assert_array_equal(spectrogram[frame][inside], mel[index[inside]])
        assert not spectrogram[frame][~valid[frame]].any()
    assert not valid[0].all()  # the first frame's window reaches before the audio


def test_batches_carry_clips_beside_standardised_vectors_and_modality_dropout_takes_both(sample_store):
    inputs = features(sample_store, ["fer", "face_crop", "mel64"], spec=ClipSpec(2, 3, 21))
    assert inputs.model_inputs == {"face": inputs.modality_dims["face"], "face_clip": (2, 112, 112, 3),
                                   "spectrogram": (21, 64)}
    batch = next(WindowBatches(inputs, [VIDEO], WindowConfig(16, 16), batch_size=3).batches())
    assert batch.inputs["face_clip"].shape == (3, 16, 2, 112, 112, 3) and batch.inputs["face"].shape[:2] == (3, 16)
    np.testing.assert_array_equal(batch.inputs["face_clip"][1], inputs.rows(VIDEO, 16, 32)["face_clip"])
    tensors, _, _, _ = batch.to(torch.device("cpu"))
    dropped = drop_modalities(tensors, 0.99, torch.Generator().manual_seed(0))
    for name in ("face_clip", "spectrogram"):  # a dropped input's validity goes with it
        gone = dropped[name].flatten(1).eq(0).all(dim=1)
        assert not dropped[f"{name}_valid"][gone].any()


def test_clip_inputs_need_a_trunk_model_and_a_consistent_selection(sample_store):
    with pytest.raises(FeatureError, match="choose a trunk model"):
        StoreFeatures(sample_store, ["face_crop"], [VIDEO])
    with pytest.raises(ClipError, match="select face_crop too"):
        StoreFeatures(sample_store, ["face_mask"], [VIDEO], clips=TSAV_CLIPS)
    with pytest.raises(ClipError, match="choose one spectrogram"):
        StoreFeatures(sample_store, ["mel64", "mel64_fine"], [VIDEO], clips=TSAV_CLIPS)
    with pytest.raises(ClipError, match="takes no spectrogram"):
        StoreFeatures(sample_store, ["mel64"], [VIDEO], clips=ClipSpec(1, 1, 0))


def test_m3t_routing_keeps_one_input_per_feature(sample_store):
    inputs = features(sample_store, ["fer", "logmel", "mfcc_mel", "face_crop"], spec=ClipSpec(), group_by="feature")
    assert list(inputs.modality_dims) == ["fer", "logmel", "mfcc_mel"]
    assert list(features(sample_store, ["fer", "logmel", "mfcc_mel"], spec=None).modality_dims) == ["face", "audio"]


def test_worker_processes_open_the_store_themselves_and_give_the_same_batches(sample_store):
    inputs = features(sample_store, ["logmel", "face_crop", "mel64"], spec=ClipSpec(2, 6, 11))
    inputs.in_memory = False  # every window read from the store, in the workers
    in_thread = WindowBatches(inputs, [VIDEO], WindowConfig(24, 24), batch_size=2, shuffle=True, seed=3)
    in_workers = WindowBatches(inputs, [VIDEO], WindowConfig(24, 24), batch_size=2, shuffle=True, seed=3, workers=2)
    pairs = list(zip(in_thread.batches(epoch=1), in_workers.batches(epoch=1), strict=True))
    assert len(pairs) == 8
    for ours, theirs in pairs:
        assert ours.windows == theirs.windows
        for name, values in ours.inputs.items():
            np.testing.assert_array_equal(values, theirs.inputs[name])
