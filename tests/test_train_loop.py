"""The training loop over a real store (samples/) with generated VA, EXPR and AU labels: every model trains a step on
every task, folds and their predictions, TSAV's label rules, the run directory's files."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from train.experiment import Experiment, ExperimentConfig, tsav_label_rules
from train.loop import OptimConfig
from train.losses import LossConfig
from train.models import MODELS
from train.predict import predict_store
from train.tasks import expr_task, va_task
from train.windows import WindowConfig

FRAMES = {"crema_d_1001_DFA_concat": 379, "grid_id2_vcd_swwp2s": 75}
SHORT = WindowConfig(length_frames=32, hop_frames=16, sampling="random", random_windows_per_video=2)


@pytest.fixture(scope="module")
def label_csv(tmp_path_factory) -> Path:
    """Per-frame VA, EXPR (class index) and two AUs for both sample videos; one frame of GRID left unlabelled."""
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "frame", "valence", "arousal", "expr", "AU1", "AU12"])
        for video_id, n_frames in FRAMES.items():
            t = np.arange(n_frames) / 30
            for frame in range(n_frames - (video_id.startswith("grid"))):
                writer.writerow([video_id, frame, f"{np.sin(t[frame]):.4f}", f"{np.cos(2 * t[frame]) / 2:.4f}",
                                 frame // 64 % 7, int(rng.random() < 0.3), int(frame % 50 < 20)])
    return path


def experiment(sample_store, label_csv, run_dir, **changes) -> Experiment:
    settings = {"window": SHORT, "optim": OptimConfig(epochs=1, batch_size=2), **changes}
    config = ExperimentConfig(store=sample_store.location, labels=str(label_csv), features=("logmel", "mfcc_mel"),
                              **settings)
    return Experiment(config, run_dir, progress=False)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_every_model_trains_a_step_on_every_task_it_supports(model_name, sample_store, label_csv, tmp_path):
    tasks = MODELS[model_name].tasks
    run = experiment(sample_store, label_csv, tmp_path / model_name, model=model_name, tasks=tasks)
    assert list(run.tasks) == [t for t in ("va", "expr", "au") if t in tasks]
    assert run.label_messages == ["video grid_id2_vcd_swwp2s: va labels have 74 rows, features 75 frames: padded "
                                  "1 row by repeating the last"] or any("padded" in m for m in run.label_messages)
    fold = run.folds[0]
    before = {k: v.clone() for k, v in experiment_model_state(run).items()}
    run_dir = run.run()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 1 and np.isfinite(metrics["epochs"][0]["train_loss"]["loss"])
    expected = {"va": {"valence", "arousal", "va_mean"}, "expr": {"expr_f1", "expr_accuracy"},
                "au": {"au_f1", "au_accuracy"}}
    for task in tasks:
        assert expected[task] <= metrics["final"]["train"].keys()
    after = torch.load(run_dir / "model.pt", weights_only=True)
    assert any(not torch.equal(before[k], after[k]) for k in before), "no parameter changed"
    assert fold.videos("train") and (run_dir / "training_curve.png").stat().st_size > 10_000


def experiment_model_state(run: Experiment) -> dict[str, torch.Tensor]:
    """The initial weights the run's model will start from (same seed, same build)."""
    from train.models import build_model
    from train.loop import seed_everything

    seed_everything(run.config.optim.seed)
    model = build_model(run.config.model, run.features.modality_dims, list(run.tasks.values()))
    return model.state_dict()


def test_folds_keep_each_folds_model_and_predictions(sample_store, label_csv, tmp_path):
    run = experiment(sample_store, label_csv, tmp_path / "folds", folds=2, tasks=("va",))
    run_dir = run.run()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1] and "va_mean" in summary["mean"]["val"]
    vals = [json.loads((run_dir / f"fold{k}" / "config.json").read_text())["fold"]["val"] for k in (0, 1)]
    assert sorted(vals[0] + vals[1]) == sorted(FRAMES)  # each video validated by exactly one fold
    for k in (0, 1):
        assert sorted(p.stem for p in (run_dir / f"fold{k}" / "predictions").glob("*.csv")) == sorted(FRAMES)
    written = predict_store(run_dir, sample_store.location, tmp_path / "pred", torch.device("cpu"), progress=False)
    assert sorted(p.relative_to(tmp_path / "pred").as_posix() for p in written) == sorted(
        f"fold{k}/{v}.csv" for k in (0, 1) for v in FRAMES)
    rows = list(csv.reader((tmp_path / "pred" / "fold1" / "grid_id2_vcd_swwp2s.csv").open()))
    assert rows[0] == ["frame", "valence", "arousal"] and len(rows) == 76
    assert all(-1 <= float(v) <= 1 for r in rows[1:] for v in r[1:])


def test_alternating_schedule_and_focal_loss_run(sample_store, label_csv, tmp_path):
    run = experiment(sample_store, label_csv, tmp_path / "alt", tasks=("expr", "au"),
                     loss=LossConfig(expr_loss="focal", schedule="batch"),
                     optim=OptimConfig(epochs=2, batch_size=1))
    metrics = json.loads((run.run() / "metrics.json").read_text())
    losses = [set(e["train_loss"]) for e in metrics["epochs"]]
    assert all({"expr", "au"} <= keys for keys in losses)  # batches alternate, so each epoch saw both tasks


def test_tsav_rules_drop_inconsistent_frames_and_add_pseudo_valence():
    tasks = {"va": va_task(), "expr": expr_task()}
    happy, sad, neutral = (expr_task().columns.index(c) for c in ("Happiness", "Sadness", "Neutral"))
    va = np.array([[-0.5, 0.1], [0.5, 0.1], [0.6, 0.6], [0.4, 0.2], [-5, -5], [-5, -5], [0.3, 0.1]], np.float32)
    expr = np.array([happy, sad, neutral, happy, happy, -1, sad])
    labels = {"v": {"va": va, "expr": expr}}
    masks = {"v": {t: tasks[t].valid(labels["v"][t]) for t in tasks}}
    config = ExperimentConfig(store="", labels="", filter_labels=True, pseudo_labels=True)
    new_labels, new_masks = tsav_label_rules(config, tasks, labels, masks, ["v"])
    # happy with negative valence, sad with positive valence, neutral far from the origin: dropped
    np.testing.assert_array_equal(new_masks["v"]["expr"], [False, False, False, True, True, False, False])
    assert new_masks["v"]["va"][4] and new_labels["v"]["va"][4, 0] > 0  # pseudo VA for a happy frame: positive
    assert not new_masks["v"]["va"][5]  # no expression, no pseudo label
    assert labels["v"]["va"][4, 0] == -5  # the caller's labels are not modified
    assert dataclasses.replace(config, pseudo_labels=False).pseudo_labels is False
