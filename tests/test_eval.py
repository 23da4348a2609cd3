"""Fold fusion, submission files, and `python -m eval` on real training runs over the sample store."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.evaluate import evaluate_folder, evaluate_run, fuse_folds
from eval.fusion import box_smooth, ccc_centering, majority_vote
from eval.report import EXPR_CONFUSION, VA_TIMELINES
from eval.submission import fit_length, write_submission
from eval.tasks import au_task, expr_task, va_task
from train.experiment import Experiment, ExperimentConfig
from train.loop import OptimConfig
from train.windows import WindowConfig

FRAMES = {"crema_d_1001_DFA_concat": 379, "grid_id2_vcd_swwp2s": 75}
TOL = 1e-6


def test_ccc_centering_worked_example():
    fused = ccc_centering(np.array([[0, .2, .4, .6], [.2, .4, .6, .8], [0, 0, .6, .6]]))
    np.testing.assert_allclose(fused, [.063248, .196582, .529915, .663248], atol=TOL)


def test_ccc_centering_clips_and_smooths_only_when_asked():
    folds = np.array([[0.9, 1.0, 1.0, 0.95], [1.0, 1.0, 1.0, 1.0]]) + 0.2
    assert ccc_centering(folds).max() == 1.0
    x = np.random.default_rng(0).normal(0, 0.3, (3, 60))
    plain, smoothed = ccc_centering(x), ccc_centering(x, pre_smooth=True, post_smooth=True)
    assert np.abs(np.diff(smoothed)).mean() < np.abs(np.diff(plain)).mean() / 2
    np.testing.assert_allclose(box_smooth(np.ones(40)), np.ones(40))  # the ends average over frames that exist
    np.testing.assert_allclose(ccc_centering(x[:1]), np.clip(x[0], -1, 1))


def test_majority_vote_of_classes_and_aus():
    np.testing.assert_array_equal(majority_vote(np.array([[0, 1, 2], [0, 2, 1], [3, 2, 1]]), 4), [0, 2, 1])
    aus = np.array([[[1, 0]], [[1, 1]], [[0, 1]], [[0, 0]]])  # 4 folds, 1 frame, 2 AUs: ties are not a majority
    np.testing.assert_array_equal(majority_vote(aus), [[0, 0]])


def test_submission_files_have_the_organisers_layout_and_the_videos_length(tmp_path):
    tasks = {"va": va_task(), "expr": expr_task(), "au": au_task()}
    predictions = {"v1": {"va": np.array([[0.5, -0.25], [1.5, 0.0]]), "expr": np.array([3, 7, 7]),
                          "au": np.ones((4, 12), int)}}
    written = write_submission(predictions, tasks, {"v1": 3}, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "AU_Detection_Challenge/v1.txt", "EXPR_Classification_Challenge/v1.txt", "VA_Estimation_Challenge/v1.txt"]
    va = (tmp_path / "VA_Estimation_Challenge" / "v1.txt").read_text().splitlines()
    assert va == ["valence,arousal", "0.500000,-0.250000", "1.000000,0.000000", "1.000000,0.000000"]  # padded
    expr = (tmp_path / "EXPR_Classification_Challenge" / "v1.txt").read_text().splitlines()
    assert expr[0] == "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other" and expr[1:] == ["3", "7", "7"]
    au = (tmp_path / "AU_Detection_Challenge" / "v1.txt").read_text().splitlines()
    assert au[0].startswith("AU1,AU2,AU4") and len(au) == 4  # trimmed from 4 rows to 3
    assert fit_length(np.arange(3), 5)[1] == "padded 2 rows by repeating the last"


@pytest.fixture(scope="module")
def two_fold_run(sample_store, tmp_path_factory) -> Path:
    """A real 2-fold run over the sample store with generated VA and EXPR labels (one video per fold)."""
    work = tmp_path_factory.mktemp("evalrun")
    labels = work / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "frame", "valence", "arousal", "expr"])
        for video_id, n_frames in FRAMES.items():
            for frame in range(n_frames):
                writer.writerow([video_id, frame, f"{np.sin(frame / 25):.3f}", f"{np.cos(frame / 40) / 2:.3f}",
                                 frame // 60 % 6])
    config = ExperimentConfig(store=sample_store.location, labels=str(labels), features=("logmel", "mfcc_mel"),
                              model="gru_seed002", folds=2, window=WindowConfig(64, 32),
                              optim=OptimConfig(epochs=2, batch_size=4))
    return Experiment(config, work / "runs" / "two_folds", progress=False).run()


def test_eval_of_a_multi_fold_run_scores_out_of_fold_and_fuses_for_submission(two_fold_run):
    evaluation = evaluate_run(two_fold_run)
    metrics = evaluation.metrics
    assert metrics["scored"] == "validation videos (out of fold)"
    assert metrics["frames_scored"] == {"va": 379 + 75, "expr": 379 + 75}  # each video once, by its held-out fold
    assert set(metrics["per_video"]) == set(FRAMES) and [f["fold"] for f in metrics["folds"]] == [0, 1]
    # out of fold: each video's scored predictions are those of the fold that validated it
    for fold in (0, 1):
        config = json.loads((two_fold_run / f"fold{fold}" / "config.json").read_text())
        (held_out,) = config["fold"]["val"]
        with (two_fold_run / f"fold{fold}" / "predictions" / f"{held_out}.csv").open() as handle:
            valence = [float(row["valence"]) for row in csv.DictReader(handle)]
        np.testing.assert_allclose(evaluation.predictions[held_out]["va"][:, 0], valence, atol=1e-6)
    assert {v: len(p["va"]) for v, p in evaluation.submission.items()} == FRAMES
    assert np.abs(evaluation.submission["grid_id2_vcd_swwp2s"]["va"]).max() <= 1


@pytest.mark.slow
def test_python_m_eval_writes_metrics_report_and_images(two_fold_run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "eval", "--run", str(two_fold_run)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = two_fold_run / "eval"
    assert Path(done.stdout.strip().splitlines()[-1]) == out / "report.md"
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"valence", "arousal", "va_mean", "expr_f1", "expr_accuracy"} <= metrics["overall"].keys()
    report = (out / "report.md").read_text()
    for figure in (VA_TIMELINES, EXPR_CONFUSION):
        assert f"({figure})" in report and (out / figure).stat().st_size > 10_000
    assert len(list((out / "submission" / "VA_Estimation_Challenge").glob("*.txt"))) == 2

    # the same predictions scored as a plain folder with the labels: all labelled frames of that fold
    fold0 = two_fold_run / "fold0"
    labels = json.loads((fold0 / "config.json").read_text())["labels"]
    folder = evaluate_folder(fold0 / "predictions", labels)
    assert folder.metrics["frames_scored"] == {"va": 454, "expr": 454}
    done = subprocess.run([sys.executable, "-m", "eval", "--pred", str(fold0 / "predictions"), "--labels", labels,
                           "--out", str(tmp_path / "e")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["overall"] == pytest.approx(
        folder.metrics["overall"])


def test_box_smoothing_keeps_the_length_of_short_videos():
    for n_frames in (1, 5, 10, 15, 40):
        x = np.linspace(-1, 1, n_frames)
        assert box_smooth(x).shape == (n_frames,)
        assert ccc_centering(np.stack([x, x / 2]), pre_smooth=True, post_smooth=True).shape == (n_frames,)
    np.testing.assert_allclose(box_smooth(np.arange(5.0), 3), [0.5, 1, 2, 3, 3.5])


def test_fused_va_is_ccc_centering_of_each_dimension_and_classes_are_voted():
    rng = np.random.default_rng(1)
    folds = [{"v": {"va": rng.uniform(-1, 1, (30, 2)).astype(np.float32), "expr": rng.integers(0, 8, 30)}}
             for _ in range(3)]
    fused = fuse_folds(folds, {"va": va_task(), "expr": expr_task()})
    for d in (0, 1):
        np.testing.assert_allclose(fused["v"]["va"][:, d], ccc_centering(np.stack([f["v"]["va"][:, d] for f in folds])),
                                   atol=1e-6)
    np.testing.assert_array_equal(fused["v"]["expr"], majority_vote(np.stack([f["v"]["expr"] for f in folds]), 8))


def write_predictions(folder: Path, video_id: str, rows) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{video_id}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "valence", "arousal"])
        writer.writerows([i, *row] for i, row in enumerate(rows))


def test_a_folder_is_scored_only_on_frames_its_labels_really_hold(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("video,frame,valence,arousal\n" + "".join(f"v,{i},{i / 10:.1f},0.5\n" for i in range(8)))
    write_predictions(tmp_path / "pred", "v", [(i / 10, 0.5 - i / 20) for i in range(10)])  # 2 frames more
    evaluation = evaluate_folder(tmp_path / "pred", str(labels))
    assert evaluation.metrics["frames_scored"] == {"va": 8}
    assert evaluation.metrics["overall"]["valence"] == pytest.approx(1.0)


def test_bad_inputs_are_one_line_errors(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("video,frame,valence,arousal\nv,0,0.1,0.2\nv,1,0.2,0.3\n")
    write_predictions(tmp_path / "pred", "v", [("0.1", "x"), ("0.2", "0.3")])
    cases = [(["--pred", str(tmp_path / "pred"), "--labels", str(labels)], "is not a number"),
             (["--pred", str(tmp_path / "pred")], "needs --labels"),
             (["--pred", str(tmp_path / "empty"), "--labels", str(labels)], "no prediction files"),
             (["--run", str(tmp_path / "no_run")], "no config.json")]
    for argv, message in cases:
        done = subprocess.run([sys.executable, "-m", "eval", *argv], capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
