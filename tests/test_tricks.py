"""The training tricks (train.tricks), each measured on learnability data (tests/learnability.py) on held-out videos
no run has seen: smoothing and per-AU thresholds chosen on validation, logit adjustment for EXPR imbalance, modality
dropout; each recorded in config.json and applied by predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.predictions import read_predictions
from eval.tasks import TaskSpec, tasks_from_json
from learnability import Learnability, held_out_scores
from train.__main__ import main as train_main
from train.experiment import Experiment, ExperimentConfig
from train.features import StoreFeatures
from train.loop import OptimConfig
from train.losses import LossConfig
from train.post_processing import PostProcessing
from train.predict import load_trained, predict_frames, predict_store
from train.scoring import score
from train.tricks import TricksConfig, choose_au_thresholds, drop_modalities, expr_logit_offsets
from train.windows import WindowConfig

CPU = torch.device("cpu")
TINY = {"modality_dim": 16, "gru_hidden": 16, "gru_layers": 1, "fc_dim": 16}
pytestmark = pytest.mark.usefixtures("one_thread")  # these GRUs are tiny


def train_run(data, run_dir: Path, tricks: TricksConfig, tasks: tuple[str, ...], features: tuple[str, ...],
              loss: LossConfig = LossConfig()) -> Path:
    store, label_csv, _ = data
    config = ExperimentConfig(store=store.location, labels=str(label_csv), features=features, tasks=tasks,
                              model="m3t_concat", model_overrides=TINY, window=WindowConfig(16, 16, "sliding"),
                              optim=OptimConfig(epochs=12, batch_size=8, learning_rate=3e-3, warmup_epochs=0),
                              loss=loss, tricks=tricks)
    return Experiment(config, run_dir, progress=False).run()


def run_tasks(run_dir: Path) -> dict[str, TaskSpec]:
    return tasks_from_json(json.loads((run_dir / "config.json").read_text())["tasks"])


def outputs_of(run_dir: Path, store, video_ids: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """The run's per-frame outputs (before any post-processing) for ``video_ids``."""
    model, config, _, standardiser = load_trained(run_dir, CPU)
    features = StoreFeatures(store, config["features"], video_ids)
    features.use_standardiser(standardiser)
    return predict_frames(model, features, video_ids, WindowConfig(**config["window"]), CPU)


@pytest.fixture(scope="module")
def post_processed(tmp_path_factory):
    """One run with smoothing and AU thresholds on rare, noisy AUs learnt with plain BCE (where 0.5 is too high a
    threshold), and its store and labels."""
    tmp = tmp_path_factory.mktemp("post")
    data = Learnability(videos={"train": 8, "val": 4, "test": 4}, au_rates=(0.08, 0.1, 0.15, 0.05), noise=3.0,
                        segment_frames=(10, 30)).write(tmp / "store.zarr")
    run_dir = train_run(data, tmp / "run", TricksConfig(smoothing=True, au_thresholds=True), ("expr", "au"),
                        ("synthetic_face", "synthetic_audio"), LossConfig(au_positive_weights=False))
    return data, run_dir


def test_smoothing_and_au_thresholds_chosen_on_validation_lift_held_out_scores(post_processed, tmp_path):
    (store, _, labels), run_dir = post_processed
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tricks"]["smoothing"] and config["tricks"]["au_thresholds"]
    chosen = config["post_processing"]
    assert chosen["chosen_on"] == "val"
    assert chosen["smoothing_frames"]["expr"] > 1
    assert len(chosen["au_thresholds"]) == 4 and chosen["au_thresholds"] != [0.5] * 4
    assert chosen["scores_after"]["objective"] > chosen["scores_before"]["objective"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["final"]["val"] == pytest.approx(chosen["scores_after"])

    test_ids = [f"test_{k}" for k in range(4)]
    tasks = run_tasks(run_dir)
    outputs = outputs_of(run_dir, store, test_ids)
    masks = {vid: {task: np.ones(600, bool) for task in tasks} for vid in test_ids}
    post = PostProcessing.from_json(chosen)
    raw = score(outputs, labels, masks, tasks, test_ids)
    smoothed = score(outputs, labels, masks, tasks, test_ids, PostProcessing(post.smoothing_frames))
    both = score(outputs, labels, masks, tasks, test_ids, post)
    print(f"held out: expr F1 {raw['expr_f1']:.3f} -> smoothed {smoothed['expr_f1']:.3f}; AU F1 raw "
          f"{raw['au_f1']:.3f} -> smoothed {smoothed['au_f1']:.3f} -> thresholds {both['au_f1']:.3f}")
    assert smoothed["expr_f1"] >= raw["expr_f1"] + 0.03
    assert both["au_f1"] >= smoothed["au_f1"] + 0.1

    # predict applies what the run chose, or not (--no-post-processing)
    for applied, decider in ((True, post), (False, PostProcessing())):
        out = tmp_path / f"applied_{applied}"
        argv = ["predict", str(run_dir), store.location, "--out", str(out)] + ([] if applied else
                                                                               ["--no-post-processing"])
        assert train_main(argv) == 0
        written = read_predictions(out, tasks)
        for vid in test_ids:
            for task in tasks:
                np.testing.assert_array_equal(written[vid][task], decider.decide(task, outputs[vid][task]))
        assert held_out_scores(out, labels, tasks, test_ids)["expr_f1"] == pytest.approx(
            (both if applied else raw)["expr_f1"])


def test_logit_adjustment_lifts_rare_expressions_and_macro_f1(tmp_path):
    prior = (0.45, 0.2, 0.12, 0.08, 0.06, 0.04, 0.03, 0.02)
    data = Learnability(videos={"train": 12, "val": 4, "test": 8}, gains={"face": 1.0}, expr_prior=prior,
                        noise=3.5, segment_frames=(8, 24)).write(tmp_path / "store.zarr")
    test_ids = [f"test_{k}" for k in range(8)]
    gold = np.concatenate([data[2][vid]["expr"] for vid in test_ids])
    f1, rare_recall = {}, {}
    for tau in (0.0, 1.0):
        run_dir = train_run(data, tmp_path / f"tau{tau}", TricksConfig(logit_adjustment_tau=tau), ("expr",),
                            ("synthetic_face",))
        assert json.loads((run_dir / "config.json").read_text())["tricks"]["logit_adjustment_tau"] == tau
        out = tmp_path / f"pred{tau}"
        predict_store(run_dir, data[0].location, out, CPU, progress=False)
        f1[tau] = held_out_scores(out, data[2], run_tasks(run_dir), test_ids)["expr_f1"]
        decisions = read_predictions(out, run_tasks(run_dir))
        predicted = np.concatenate([decisions[vid]["expr"] for vid in test_ids])
        rare_recall[tau] = float(np.mean([np.mean(predicted[gold == c] == c) for c in range(4, 8)]))
    print(f"held out: EXPR macro F1 {f1[0.0]:.3f} -> {f1[1.0]:.3f} with logit adjustment (tau 1); mean recall of "
          f"the four rarest classes {rare_recall[0.0]:.3f} -> {rare_recall[1.0]:.3f}")
    assert rare_recall[1.0] >= rare_recall[0.0] + 0.08
    assert f1[1.0] > f1[0.0]


def test_modality_dropout_keeps_a_model_working_without_its_strongest_modality(tmp_path):
    data = Learnability(gains={"face": 1.0, "audio": 0.5}).write(tmp_path / "store.zarr")
    scores = {}
    for p in (0.0, 0.5):
        run_dir = train_run(data, tmp_path / f"dropout{p}", TricksConfig(modality_dropout=p), ("expr", "au"),
                            ("synthetic_face", "synthetic_audio"))
        assert json.loads((run_dir / "config.json").read_text())["tricks"]["modality_dropout"] == p
        predict_store(run_dir, data[0].location, tmp_path / f"pred{p}", CPU, progress=False)
        for variant in ("", "_no_face"):
            scores[p, variant] = held_out_scores(tmp_path / f"pred{p}", data[2], run_tasks(run_dir),
                                                 [f"test_{k}{variant}" for k in range(3)])
    summary = {key: round(s["expr_f1"] + s["au_f1"], 3) for key, s in scores.items()}
    print(f"held out, EXPR F1 + AU F1 by (dropout, videos): {summary}")
    assert summary[0.5, "_no_face"] >= summary[0.0, "_no_face"] + 0.1


def test_modality_dropout_never_drops_every_modality_of_a_window():
    inputs = {m: torch.ones(4000, 3, 2) for m in ("face", "audio", "word")}
    dropped = drop_modalities(inputs, 0.6, torch.Generator().manual_seed(0))
    kept = torch.stack([dropped[m][:, 0, 0] for m in inputs], dim=1)
    assert bool((kept.sum(dim=1) >= 1).all())
    assert 0.4 < float(1 - kept.mean()) < 0.6  # 0.6 per modality, less the windows rescued
    assert drop_modalities({"face": torch.ones(5, 2, 2)}, 0.9, torch.Generator())["face"].eq(1).all()


def test_logit_offsets_are_tau_times_the_log_prior_of_the_training_frames():
    classes = np.array([0, 0, 0, 1, -1, 2, 2, 2, 2, 2, 2])
    offsets = expr_logit_offsets(classes, 4, tau=1.0)
    np.testing.assert_allclose(offsets, np.log(np.array([3, 1, 6, 1]) / 11), rtol=1e-6)  # class 3 counted once
    assert expr_logit_offsets(classes, 4, tau=0.0) is None


def test_au_thresholds_are_the_best_of_the_candidates_per_au():
    rng = np.random.default_rng(0)
    gold = (rng.random((2000, 2)) < 0.2).astype(np.float32)
    probabilities = np.stack([0.3 * gold[:, 0] + 0.2 * rng.random(2000),  # negatives below 0.2, positives from 0.3
                              0.6 + 0.3 * gold[:, 1] + 0.04 * rng.random(2000)], axis=1)  # below 0.64, from 0.9
    candidates = tuple(round(0.05 * i, 2) for i in range(1, 20))
    thresholds = choose_au_thresholds(probabilities, gold, TaskSpec("au", ("AU1", "AU2")), candidates)
    assert thresholds == (0.3, 0.65)  # of the thresholds that separate perfectly, the nearest to 0.5
