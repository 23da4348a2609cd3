"""The trunk models trained through the whole trainer on real crops, masks and spectrograms of samples/: each model
takes a training step on every task it supports and predicts every frame; stages start from a previous run's weights
and keep frozen modules as they were."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from features_store import FeatureStore
from train.experiment import Experiment, ExperimentConfig, TrainError
from train.loop import OptimConfig
from train.models import MODELS
from train.windows import WindowConfig

VIDEOS_WITH_FACES = "crema_d_1001_DFA_concat"
AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
TINY = {
    "tsav": dict(visual_widths=(4, 8, 8, 16), aural_widths=(4, 8, 8, 16), spectrogram_rows=21),
    "m3t_3dvgg": dict(widths=(4, 4, 8, 8, 8), gru_hidden=8, fc_dim=8, route=("valence=fer", "arousal=logmel")),
    "tdnn_transformer": dict(tdnn_channels=(8, 8, 8, 8, 16), tdnn_dim=16, d_model=16, num_heads=2,
                             dim_feedforward=32),
    "frame_cnn": dict(backbone="resnet50", widths=(4, 8, 8, 16), embedding_dim=16, tcn_channels=(8, 8), head_dim=8),
}
INPUTS = {"tsav": ["face_crop", "face_mask", "mel64"], "m3t_3dvgg": ["face_crop", "fer", "logmel"],
          "tdnn_transformer": ["mel64_fine", "fer"], "frame_cnn": ["face_crop", "face_mask"]}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def labels(sample_store, tmp_path_factory) -> Path:
    """Labels of every task on every frame of both sample videos (drawn at random: a step is what is tested), the GRID
    clip validating."""
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "frame", "split", "valence", "arousal", "expr", *AUS])
        for vid in sample_store.video_ids():
            split = "val" if vid.startswith("grid") else "train"
            for frame in range(sample_store.video(vid).n_frames):
                writer.writerow([vid, frame, split, *np.round(rng.uniform(-1, 1, 2), 3), rng.integers(8),
                                 *rng.integers(0, 2, len(AUS))])
    return path


def run(sample_store, labels, tmp_path, model, name="run", **settings) -> Path:
    config = ExperimentConfig(
        store=sample_store.location, labels=str(labels), features=tuple(INPUTS[model]), model=model,
        tasks=MODELS[model].tasks, model_overrides=TINY[model],
        window=WindowConfig(8, 8, "random", random_windows_per_video=2),
        optim=OptimConfig(epochs=1, batch_size=2, warmup_epochs=0), **settings)
    return Experiment(config, tmp_path / name, progress=False).run()


@pytest.fixture(scope="module")
def tsav_run(sample_store, labels, tmp_path_factory) -> Path:
    """One tiny TSAV run, which the stage test starts from."""
    return run(sample_store, labels, tmp_path_factory.mktemp("tsav"), "tsav")


@pytest.mark.parametrize("model", list(TINY))
def test_each_trunk_trains_a_step_on_every_task_it_supports_and_predicts_every_frame(sample_store, labels, tmp_path,
                                                                                       model, request):
    run_dir = (request.getfixturevalue("tsav_run") if model == "tsav"
               else run(sample_store, labels, tmp_path, model))
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert all(torch.isfinite(tensor).all() for tensor in state.values() if tensor.is_floating_point())
    for vid in sample_store.video_ids():
        lines = (run_dir / "predictions" / f"{vid}.csv").read_text().splitlines()
        assert len(lines) - 1 == sample_store.video(vid).n_frames
        header = lines[0].split(",")
        assert ("valence" in header) and (("expr" in header) == ("expr" in MODELS[model].tasks))


def test_a_stage_starts_from_the_previous_run_and_keeps_frozen_modules(sample_store, labels, tmp_path, tsav_run):
    first = tsav_run
    second = run(sample_store, labels, tmp_path, "tsav", name="fusion", init_from=str(first), freeze=("visual",))
    before = torch.load(first / "model.pt", weights_only=True)
    after = torch.load(second / "model.pt", weights_only=True)
    visual = [name for name in before if name.startswith("visual.")]
    assert visual and all(torch.equal(before[name], after[name]) for name in visual)  # batch norm statistics too
    assert any(not torch.equal(before[name], after[name]) for name in before if name.startswith("aural."))
    with pytest.raises(TrainError, match="no such module; this model's modules are"):  # before any data is read
        run(sample_store, labels, tmp_path, "tsav", name="bad", freeze=("visuals",))


def test_a_label_carried_by_the_mask_alone_is_learned_at_its_frame(sample_store, tmp_path):
    """The real crops' RGB made the same in every frame, the real landmark mask kept only on frames labelled 1: the
    label reaches TSAV through the mask channel alone, in blocks of 1-3 frames, so a mask delivered even one frame
    late would cap training accuracy near 0.75."""
    source = sample_store.video(VIDEOS_WITH_FACES)
    n_frames = source.n_frames
    rng = np.random.default_rng(1)
    label = np.repeat(rng.integers(0, 2, n_frames), rng.integers(1, 4, n_frames))[:n_frames]
    crops = np.broadcast_to(source.read("face_crop")[200], (n_frames, 112, 112, 3))
    masks = source.read("face_mask") * label[:, None, None].astype(np.uint8)
    assert source.read("face_valid").all() and source.read("face_mask").reshape(n_frames, -1).any(axis=1).all()
    store = FeatureStore(str(tmp_path / "mask.zarr"), mode="a")
    provenance = {"extractor": "tests.mask_only", "version": "1", "parameters": {}, "libraries": {},
                  "created_utc": "generated"}
    video = store.create_video("mask_only", {**source.attrs, "source_name": "mask_only.mp4"})
    arrays = (("frame_time", source.read("frame_time"), None), ("face_valid", np.ones(n_frames, bool), None),
              ("face_crop", np.ascontiguousarray(crops), "face_valid"), ("face_mask", masks, "face_valid"))
    for name, values, tied in arrays:
        video.write(name, values, {"per_frame": True, "provenance": provenance} | ({"validity": tied} if tied else {}))
    video.set_complete(True)
    labels = tmp_path / "labels.csv"
    labels.write_text("video,frame,expr,split\n" + "".join(f"mask_only,{f},{label[f]},train\n"
                                                            for f in range(n_frames)))
    config = ExperimentConfig(
        store=store.location, labels=str(labels), features=("face_crop", "face_mask"), model="tsav",
        model_overrides=dict(visual_widths=(4, 8, 8, 16), clip_frames=1, crop_fraction=0.5),
        window=WindowConfig(8, 8), optim=OptimConfig(epochs=12, batch_size=8, warmup_epochs=0, learning_rate=3e-3))
    run_dir = Experiment(config, tmp_path / "run", progress=False).run()
    final = json.loads((run_dir / "metrics.json").read_text())["final"]["train"]
    assert final["expr_accuracy"] >= 0.9, final
