"""The papers' training recipes by name, their values checked against the seeds; the schedules and label rules they
need: the triangular cyclical learning rate, gradient accumulation, out-of-range labels masked and reported, an
ABAW 2021 label folder trained and scored 0.5 F1 + 0.5 accuracy over 12 AUs, and seed 001's cross-task rule."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.tasks import AUS_ABAW3, EXPR_CLASSES_ABAW2020
from train.__main__ import main as train_main
from train.experiment import Experiment, ExperimentConfig
from train.folds import Fold, without_cross_task_training
from train.loop import OptimConfig, learning_rate_schedule
from train.windows import WindowConfig

FRAMES = {"crema_d_1001_DFA_concat": 379, "grid_id2_vcd_swwp2s": 75}
SHORT = WindowConfig(length_frames=32, hop_frames=16, sampling="random", random_windows_per_video=2)


@pytest.fixture(scope="module")
def recipes() -> dict:
    """``python -m train recipes --json``, read back."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train_main(["recipes", "--json"]) == 0
    return json.loads(out.getvalue())


def test_recipes_list_the_papers_values(recipes):
    assert set(recipes) == {"abaw3", "seed002", "seed001", "tsav", "tsav_trunks", "m3t", "m3t_visual"}
    abaw3 = recipes["abaw3"]  # seed 003 sec. 3.3-3.4
    assert abaw3["model"] == "tcn_coattention" and abaw3["folds"] == 6
    assert (abaw3["window"]["length_frames"], abaw3["window"]["hop_frames"]) == (300, 200)
    assert {key: abaw3["optim"][key] for key in ("batch_size", "optimizer", "weight_decay", "learning_rate",
                                                 "warmup_epochs", "lr_schedule", "plateau_patience",
                                                 "plateau_factor", "min_learning_rate", "epochs",
                                                 "early_stopping_patience", "reload_best_each_epoch")} == {
        "batch_size": 2, "optimizer": "adam", "weight_decay": 1e-3, "learning_rate": 1e-5, "warmup_epochs": 10,
        "lr_schedule": "plateau", "plateau_patience": 5, "plateau_factor": 0.1, "min_learning_rate": 1e-7,
        "epochs": 100, "early_stopping_patience": 10, "reload_best_each_epoch": True}
    assert abaw3["loss"]["va_loss"] == "ccc"
    seed002 = recipes["seed002"]
    assert seed002["model"] == "gru_seed002" and seed002["loss"]["va_loss"] == "mse"
    assert (seed002["window"]["length_frames"], seed002["window"]["hop_frames"]) == (15, 10)
    assert (seed002["optim"]["optimizer"], seed002["optim"]["learning_rate"]) == ("rmsprop", 1e-4)
    seed001 = recipes["seed001"]
    assert seed001["model"] == "transformer_seed001" and seed001["window"]["length_frames"] == 30
    assert (seed001["optim"]["optimizer"], seed001["optim"]["learning_rate"]) == ("sgd", 0.01)
    assert seed001["optim"]["momentum"] > 0 and seed001["loss"]["expr_loss"] == "focal"
    assert seed001["loss"]["schedule"] == "epoch" and seed001["labels"]["protocol"] == "abaw2021"
    tsav = recipes["tsav"]
    assert (tsav["optim"]["optimizer"], tsav["optim"]["learning_rate"]) == ("adam", 1e-3)
    assert tsav["optim"]["batch_size"] * tsav["optim"]["accumulate_batches"] == 320
    assert tsav["labels"]["filter_labels"] and tsav["labels"]["pseudo_labels"] == ["valence"]
    trunks = recipes["tsav_trunks"]  # the same recipe on the paper's own network: 4 windows of 8 frames x 10
    assert trunks["model"] == "tsav" and trunks["window"]["length_frames"] == 8
    frames_per_step = trunks["optim"]["batch_size"] * trunks["window"]["length_frames"]
    assert frames_per_step * trunks["optim"]["accumulate_batches"] == 320
    assert recipes["m3t_visual"]["model"] == "m3t_3dvgg" and recipes["m3t_visual"]["optim"] == recipes["m3t"]["optim"]
    m3t = recipes["m3t"]
    assert m3t["window"]["length_frames"] == 32 and m3t["window"]["sampling"] == "random"
    assert m3t["window"]["random_windows_per_video"] == 200 and m3t["optim"]["batch_size"] == 64
    assert (m3t["optim"]["optimizer"], m3t["optim"]["weight_decay"]) == ("adam", 1e-4)
    assert (m3t["optim"]["lr_schedule"], m3t["optim"]["cyclical_base_lr"]) == ("cyclical", 1e-7)
    assert m3t["optim"]["cyclical_step_up_epochs"] == 3 and m3t["loss"]["lambda_expr"] == 0.5
    assert seed001["loss"]["au_positive_weights"]
    for name, recipe in recipes.items():  # every value says where it comes from; the tricks are off, as in the papers
        assert not (recipe["tricks"]["smoothing"] or recipe["tricks"]["au_thresholds"]), name
        assert recipe["tricks"]["logit_adjustment_tau"] == 0 and recipe["tricks"]["modality_dropout"] == 0, name
        assert all(source.startswith(("seed 00", "ours", "the ")) for source in recipe["sources"].values()), name
        assert "seed 00" in recipe["sources"]["optim.learning_rate"] or name in ("m3t", "m3t_visual")


def test_the_cyclical_schedule_is_triangular():
    """Smith's triangular policy: lr = base + (max - base) max(0, 1 - |it / step - 2 cycle + 1|), cycle =
    floor(1 + it / (2 step)); M3T steps up over 3 epochs of iterations."""
    optim = OptimConfig(lr_schedule="cyclical", learning_rate=1e-3, cyclical_base_lr=1e-7, cyclical_step_up_epochs=3)
    optimiser = optim.build_optimizer([torch.nn.Parameter(torch.zeros(1))])
    _, cyclical = learning_rate_schedule(optimiser, optim, steps_per_epoch=4)
    step = 12
    seen = []
    for iteration in range(40):
        seen.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        cyclical.step()
    cycle = np.floor(1 + np.arange(40) / (2 * step))
    x = np.abs(np.arange(40) / step - 2 * cycle + 1)
    np.testing.assert_allclose(seen, 1e-7 + (1e-3 - 1e-7) * np.maximum(0, 1 - x), rtol=1e-6)
    assert max(seen) == pytest.approx(1e-3) and seen[0] == pytest.approx(1e-7)


def write_labels(path: Path, rows_of) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "frame", "valence", "arousal", "split"])
        for video_id, n_frames in FRAMES.items():
            for frame in range(n_frames):
                writer.writerow([video_id, frame, *rows_of(video_id, frame),
                                 "val" if video_id.startswith("grid") else "train"])
    return path


def test_out_of_range_labels_train_and_are_reported(sample_store, tmp_path):
    """Five frames of valence 3.0 (outside [-1, 1]): masked, counted in metrics.json, and training goes on."""
    def rows(video_id, frame):
        return (3.0 if video_id.startswith("crema") and frame < 5 else np.sin(frame / 9), np.cos(frame / 7) / 2)

    labels = write_labels(tmp_path / "labels.csv", rows)
    config = ExperimentConfig(store=sample_store.location, labels=str(labels), features=("logmel",), window=SHORT,
                              optim=OptimConfig(epochs=1, batch_size=2, accumulate_batches=2))
    run_dir = Experiment(config, tmp_path / "run", progress=False).run()
    report = json.loads((run_dir / "metrics.json").read_text())["label_report"]
    assert report == {str(labels): {"va": 5}}
    assert json.loads((run_dir / "config.json").read_text())["label_report"] == report
    with pytest.raises(Exception, match="line 2: va value"):
        Experiment(ExperimentConfig(store=sample_store.location, labels=str(labels), strict_labels=True))


def write_annotation(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")


def test_an_abaw2021_folder_trains_and_is_scored_over_12_aus(sample_store, tmp_path):
    """AU_Set with the 12 AUs of ABAW 2021 (seed 001): protocol abaw2021, AU score 0.5 F1 + 0.5 accuracy, checked
    against the metrics computed here from the run's prediction CSV and the annotation."""
    rng = np.random.default_rng(0)
    gold = {}
    for video_id, n_frames in FRAMES.items():
        split = "Validation_Set" if video_id.startswith("grid") else "Train_Set"
        gold[video_id] = (rng.random((n_frames, 12)) < 0.3).astype(int)
        write_annotation(tmp_path / "aff" / "AU_Set" / split / f"{video_id}.txt", ",".join(AUS_ABAW3),
                         [",".join(map(str, row)) for row in gold[video_id]])
        write_annotation(tmp_path / "aff" / "EXPR_Set" / split / f"{video_id}.txt", ",".join(EXPR_CLASSES_ABAW2020),
                         [str(frame // 60 % 7) for frame in range(n_frames)])
    config = ExperimentConfig(store=sample_store.location, labels=str(tmp_path / "aff"), features=("logmel",),
                              model="transformer_seed001", window=WindowConfig(30, 15), optim=OptimConfig(epochs=1))
    experiment = Experiment(config, tmp_path / "run", progress=False)
    assert experiment.label_set.layout() == "abaw2021" and experiment.tasks["au"].columns == AUS_ABAW3
    assert len(experiment.tasks["expr"].columns) == 7
    run_dir = experiment.run()
    final = json.loads((run_dir / "metrics.json").read_text())["final"]["val"]
    with (run_dir / "predictions" / "grid_id2_vcd_swwp2s.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    predicted = np.array([[int(row[au]) for au in AUS_ABAW3] for row in rows])
    truth = gold["grid_id2_vcd_swwp2s"]  # 75 rows, as the video has frames
    tp = ((predicted == 1) & (truth == 1)).sum(0)
    fp = ((predicted == 1) & (truth == 0)).sum(0)
    fn = ((predicted == 0) & (truth == 1)).sum(0)
    denominator = 2 * tp + fp + fn
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0).mean()
    accuracy = (predicted == truth).mean()
    assert final["au_f1"] == pytest.approx(f1) and final["au_accuracy"] == pytest.approx(accuracy)
    assert final["au_score"] == pytest.approx(0.5 * f1 + 0.5 * accuracy)


def test_a_video_validating_one_task_trains_no_task_in_that_fold():
    fold = Fold(0, {"expr": {"a": "train", "b": "train", "c": "val"}, "au": {"a": "val", "b": "train"}})
    cleaned, dropped = without_cross_task_training(fold)
    assert dropped == {"expr": ["a"]}
    assert cleaned.roles == {"expr": {"b": "train", "c": "val"}, "au": {"a": "val", "b": "train"}}
    assert set(cleaned.videos("train")).isdisjoint(cleaned.videos("val"))


def test_the_cross_task_rule_holds_in_a_run(sample_store, tmp_path):
    """Aff-Wild2's per-task splits where the CREMA-D video trains VA but validates EXPR: by default it trains no task
    in that fold (its VA frames never reach the shared trunk); with the rule off it trains VA."""
    crema, grid = sorted(FRAMES)
    for folder, splits in (("VA_Estimation_Challenge", {crema: "Train_Set", grid: "Train_Set"}),
                           ("EXPR_Classification_Challenge", {crema: "Validation_Set", grid: "Train_Set"})):
        for video_id, split in splits.items():
            header, row = ("valence,arousal", "0.1,0.2") if folder.startswith("VA") else (
                ",".join(("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")), "1")
            write_annotation(tmp_path / "aff" / folder / split / f"{video_id}.txt", header, [row] * FRAMES[video_id])
    config = ExperimentConfig(store=sample_store.location, labels=str(tmp_path / "aff"), features=("logmel",))
    fold = Experiment(config, progress=False).folds[0]
    assert fold.roles == {"va": {grid: "train"}, "expr": {crema: "val", grid: "train"}}
    assert set(fold.videos("train")).isdisjoint(fold.videos("val"))
    unruled = Experiment(dataclasses.replace(config, cross_task_rule=False), progress=False).folds[0]
    assert unruled.roles["va"] == {crema: "train", grid: "train"}
