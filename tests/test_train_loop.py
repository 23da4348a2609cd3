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

from eval.tasks import expr_task, va_task
from train.experiment import Experiment, ExperimentConfig, tsav_label_rules
from train.features import StoreFeatures
from train.loop import FoldData, OptimConfig, TrainingBatches
from train.losses import LossConfig, TaskSchedule
from train.models import MODELS
from train.models.trunks import TRUNK_MODELS
from train.predict import predict_frames, predict_store
from train.windows import WindowConfig

FRAMES = {"crema_d_1001_DFA_concat": 379, "grid_id2_vcd_swwp2s": 75}
pytestmark = pytest.mark.usefixtures("one_thread")  # small GRUs over few windows
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


@pytest.mark.parametrize("model_name", [name for name in MODELS if name not in TRUNK_MODELS])  # trunks: elsewhere
def test_every_model_trains_a_step_on_every_task_it_supports(model_name, sample_store, label_csv, tmp_path):
    tasks = MODELS[model_name].tasks
    run = experiment(sample_store, label_csv, tmp_path / model_name, model=model_name, tasks=tasks)
    assert list(run.tasks) == [t for t in ("va", "expr", "au") if t in tasks]
    assert any("grid_id2_vcd_swwp2s" in m and "padded" in m for m in run.label_messages), run.label_messages
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
    assert [f["fold"] for f in summary["folds"]] == [0, 1] and "va_mean" in summary["final"]["val"]
    vals = [json.loads((run_dir / f"fold{k}" / "config.json").read_text())["fold"]["val"] for k in (0, 1)]
    assert sorted(vals[0] + vals[1]) == sorted(FRAMES)  # each video validated by exactly one fold
    for k in (0, 1):
        assert sorted(p.stem for p in (run_dir / f"fold{k}" / "predictions").glob("*.csv")) == sorted(FRAMES)
    written = predict_store(run_dir, sample_store.location, tmp_path / "pred", torch.device("cpu"), progress=False)
    assert sorted(p.relative_to(tmp_path / "pred").as_posix() for p in written) == sorted(
        f"fold{k}/{v}.csv" for k in (0, 1) for v in FRAMES)
    rows = list(csv.reader((tmp_path / "pred" / "fold1" / "grid_id2_vcd_swwp2s.csv").open()))
    assert rows[0] == ["frame", "time_s", "valence", "arousal"] and len(rows) == 76
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]],
                               sample_store.video("grid_id2_vcd_swwp2s").read("frame_time"), atol=1e-6)
    assert all(-1 <= float(v) <= 1 for r in rows[1:] for v in r[2:])


def test_alternating_schedule_and_focal_loss_run(sample_store, label_csv, tmp_path):
    run = experiment(sample_store, label_csv, tmp_path / "alt", tasks=("expr", "au"),
                     loss=LossConfig(expr_loss="focal", schedule="epoch"),
                     optim=OptimConfig(epochs=2, batch_size=1))
    metrics = json.loads((run.run() / "metrics.json").read_text())
    assert [set(e["train_loss"]) for e in metrics["epochs"]] == [{"expr", "loss"}, {"au", "loss"}]


def test_alternating_batches_draw_each_task_from_its_own_labelled_videos(sample_store, label_csv, tmp_path):
    run = experiment(sample_store, label_csv, tmp_path / "alt", tasks=("va", "expr"))
    train_ids = sorted(FRAMES)
    run.features.fit_standardiser(train_ids)
    masks = {vid: {task: spec.valid(run.labels[vid][task]) for task, spec in run.tasks.items()} for vid in train_ids}
    masks[train_ids[0]]["va"][:] = False  # the first training video has no VA labels at all
    data = FoldData(run.features, run.tasks, run.labels, masks, masks, train_ids, [])
    batches = TrainingBatches(data, SHORT, 1, TaskSchedule("batch", ("va", "expr")), seed=0)
    drawn = [(active, batch.windows[0].video_id, batch.label_masks[active[0]].any()) for batch, active in
             batches.epoch(0)]
    assert [a for a, _, _ in drawn[:4]] == [("va",), ("expr",), ("va",), ("expr",)]
    assert all(labelled for _, _, labelled in drawn)
    assert all(video != train_ids[0] for active, video, _ in drawn if active == ("va",))


def test_same_seed_same_model_and_other_seed_other_model(sample_store, label_csv, tmp_path):
    weights = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run = experiment(sample_store, label_csv, tmp_path / name, tasks=("va",), model="gru_seed002",
                         optim=OptimConfig(epochs=1, batch_size=2, seed=seed))
        weights.append(torch.load(run.run() / "model.pt", weights_only=True))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


class WindowPosition(torch.nn.Module):
    """A real (parameter-free) model whose VA output is each frame's position in its window, over the window length."""

    def forward(self, inputs, frame_mask=None):
        x = next(iter(inputs.values()))
        position = torch.arange(x.shape[1], dtype=torch.float32) / x.shape[1]
        return {"va": position[None, :, None].expand(x.shape[0], -1, 2)}


def test_predictions_average_the_windows_that_cover_each_frame(sample_store):
    features = StoreFeatures(sample_store, ["logmel"], list(FRAMES))
    features.fit_standardiser(list(FRAMES))
    predicted = predict_frames(WindowPosition(), features, list(FRAMES), WindowConfig(300, 200),
                               torch.device("cpu"))
    expected = np.zeros(379)
    counts = np.zeros(379)
    for start in (0, 79):  # the 300-frame windows of a 379-frame video: one at 0 and the tail window
        expected[start:start + 300] += np.arange(300) / 300
        counts[start:start + 300] += 1
    np.testing.assert_allclose(predicted["crema_d_1001_DFA_concat"]["va"][:, 0], expected / counts, atol=1e-6)
    np.testing.assert_allclose(predicted["grid_id2_vcd_swwp2s"]["va"][:, 1], np.arange(75) / 300, atol=1e-6)


def test_tsav_rules_drop_inconsistent_frames_and_add_pseudo_valence():
    tasks = {"va": va_task(), "expr": expr_task()}
    happy, sad, neutral = (expr_task().columns.index(c) for c in ("Happiness", "Sadness", "Neutral"))
    va = np.array([[-0.5, 0.1], [0.5, 0.1], [0.6, 0.6], [0.4, 0.2], [-5, -5], [-5, -5], [0.3, 0.1]], np.float32)
    expr = np.array([happy, sad, neutral, happy, happy, -1, sad])
    labels = {"v": {"va": va, "expr": expr}, "w": {"va": va.copy(), "expr": expr.copy()}}
    masks = {"v": {t: tasks[t].valid(labels["v"][t]) for t in tasks},
             "w": {t: np.zeros(7, bool) for t in tasks}}  # "w" validates: no training role
    config = ExperimentConfig(store="", labels="", filter_labels=True, pseudo_labels=("valence",))
    new_labels, new_masks, pseudo = tsav_label_rules(config, tasks, labels, masks, ["v"])
    # happy with negative valence, sad with positive valence, neutral far from the origin: dropped
    np.testing.assert_array_equal(new_masks["v"]["expr"], [False, False, False, True, True, False, False])
    assert new_masks["v"]["va"][4] and new_labels["v"]["va"][4, 0] > 0  # pseudo valence for a happy frame: positive
    assert new_labels["v"]["va"][4, 1] == -5  # arousal is not pseudo-labelled by default (TSAV, Table II)
    assert not new_masks["v"]["va"][5]  # no expression, no pseudo label
    assert labels["v"]["va"][4, 0] == -5  # the caller's labels are not modified
    assert (new_labels["w"]["va"] == va).all() and not new_masks["w"]["va"].any()  # validation frames never
    draws = []
    for epoch in (1, 2, 0):
        pseudo.draw(epoch)
        draws.append(float(new_labels["v"]["va"][4, 0]))
    assert draws[0] != draws[1] and draws[0] > 0 and draws[1] > 0  # drawn again each epoch
    assert draws[2] == pytest.approx(float(tsav_label_rules(config, tasks, labels, masks, ["v"])[0]["v"]["va"][4, 0]))
    both = dataclasses.replace(config, pseudo_labels=("valence", "arousal"))
    assert tsav_label_rules(both, tasks, labels, masks, ["v"])[0]["v"]["va"][4, 1] != -5  # --pseudo-labels va


def write_annotation(path: Path, header: str, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


def test_abaw3_folders_with_per_task_splits_train_and_score_only_their_roles(sample_store, tmp_path):
    """VA: CREMA trains and GRID validates; EXPR labels CREMA only (its Validation_Set is empty of our videos)."""
    root = tmp_path / "annotations"
    va_dir, expr_dir = root / "VA_Estimation_Challenge", root / "EXPR_Classification_Challenge"
    write_annotation(va_dir / "Train_Set" / "crema_d_1001_DFA_concat.txt", "valence,arousal",
                     [f"{np.sin(i / 30):.3f},{0.2:.3f}" if i % 50 else "-5,-5" for i in range(379)])
    write_annotation(va_dir / "Validation_Set" / "grid_id2_vcd_swwp2s.txt", "valence,arousal",
                     [f"{np.cos(i / 20):.3f},-0.1" for i in range(80)])  # 5 rows too many: trimmed
    write_annotation(expr_dir / "Train_Set" / "crema_d_1001_DFA_concat.txt",
                     "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
                     [str(i // 64 % 8) if i % 7 else "-1" for i in range(379)])
    write_annotation(expr_dir / "Validation_Set" / "some_other_video.txt",
                     "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other", ["1"] * 10)
    config = ExperimentConfig(store=sample_store.location, labels=str(root), features=("logmel",),
                              model="gru_seed002", window=SHORT, optim=OptimConfig(epochs=1, batch_size=2))
    run = Experiment(config, tmp_path / "run", progress=False)
    assert list(run.tasks) == ["va", "expr"] and run.tasks["expr"].protocol == "abaw2022"
    assert any("trimmed 5 rows" in m for m in run.label_messages), run.label_messages
    assert any("some_other_video" in m for m in run.label_messages)
    fold = run.folds[0]
    assert fold.roles["va"] == {"crema_d_1001_DFA_concat": "train", "grid_id2_vcd_swwp2s": "val"}
    assert fold.roles["expr"] == {"crema_d_1001_DFA_concat": "train"}
    metrics = json.loads((run.run() / "metrics.json").read_text())
    assert {"expr_f1", "va_mean"} <= metrics["final"]["train"].keys()
    assert "va_mean" in metrics["final"]["val"] and "expr_f1" not in metrics["final"]["val"]  # no EXPR val labels
    rows = list(csv.reader((tmp_path / "run" / "predictions" / "grid_id2_vcd_swwp2s.csv").open()))
    assert rows[0] == ["frame", "time_s", "valence", "arousal", "expr"] and len(rows) == 76


def test_a_run_refuses_features_extracted_otherwise(sample_store, label_csv, tmp_path):
    """config.json records each input feature's recipe; predicting on a store whose logmel was extracted with another
    window (same width) is refused, naming the feature and the setting, unless allowed."""
    from extract.run import run_extraction
    from train.features import FeatureError

    run_dir = experiment(sample_store, label_csv, tmp_path / "run", tasks=("va",)).run()
    recipes = json.loads((run_dir / "config.json").read_text())["feature_recipes"]
    stored = sample_store.video("grid_id2_vcd_swwp2s").array("logmel").attrs["provenance"]
    assert recipes["logmel"] == {key: value for key, value in stored.items() if key != "created_utc"}
    other = str(tmp_path / "other.zarr")
    video = Path(__file__).resolve().parents[1] / "samples" / "grid_id2_vcd_swwp2s.mpg"
    report = run_extraction([video], other, ["logmel", "mfcc_mel"], progress=False,
                            settings={"logmel": {"window_s": 0.03}})
    assert not report.failed
    with pytest.raises(FeatureError, match=r"feature 'logmel' differs in parameters\.window_s"):
        predict_store(run_dir, other, tmp_path / "refused", torch.device("cpu"), progress=False)
    assert not (tmp_path / "refused").exists()
    written = predict_store(run_dir, other, tmp_path / "allowed", torch.device("cpu"), progress=False,
                            allow_other_recipes=True)
    assert [path.name for path in written] == ["grid_id2_vcd_swwp2s.csv"]
