"""eval.report: report.md links the figures it writes, figures are real PNGs, confusion counts and timeline gaps."""

from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from eval import metrics as m
from eval import report
from eval.tasks import AU_INVALID, EXPR_INVALID, VA_INVALID, au_task, expr_task, va_task

TASKS = {"va": va_task(), "expr": expr_task(), "au": au_task()}
VIDEOS = {"vid_a": 300, "vid_b": 240, "vid_c": 360, "vid_d": 200}


def synthetic(seed: int = 0):
    """predictions, labels, masks of VIDEOS: predictions of varying quality, some invalid gold frames."""
    rng = np.random.default_rng(seed)
    predictions, labels, masks = {}, {}, {}
    for i, (video, n) in enumerate(VIDEOS.items()):
        t = np.arange(n) / 30.0
        va = np.stack([0.6 * np.sin(t * (1 + i)), 0.4 * np.cos(t * 0.7)], axis=1).astype(np.float32)
        va_pred = np.clip(va + rng.normal(0, 0.1 + 0.25 * i, va.shape), -1, 1)
        expr = rng.integers(0, 8, n)
        expr_pred = np.where(rng.random(n) < 0.7 - 0.15 * i, expr, rng.integers(0, 8, n))
        au = (rng.random((n, 12)) < 0.3).astype(np.float32)
        au_pred = np.where(rng.random((n, 12)) < 0.8, au, 1 - au).astype(np.int64)
        va[10:30] = VA_INVALID
        expr[: 5 + i] = EXPR_INVALID
        au[-7:] = AU_INVALID
        labels[video] = {"va": va, "expr": expr, "au": au}
        predictions[video] = {"va": va_pred, "expr": expr_pred, "au": au_pred}
        masks[video] = {name: task.valid(labels[video][name]) for name, task in TASKS.items()}
    return predictions, labels, masks


def metrics_json(predictions, labels, masks, tasks):
    """The metrics.json layout: overall (concatenated) and per-video scores in the trainer's key names."""
    def keyed(name, p, g):
        if name == "va":
            s = m.va_score(p, g)
            return {"valence": s["valence"], "arousal": s["arousal"], "va_mean": s["mean"]}
        if name == "expr":
            s = m.expr_score(p, g, "abaw2022")
            return {"expr_f1": s["f1"], "expr_accuracy": s["accuracy"], "expr_score": s["score"]}
        s = m.au_score(p, g.astype(np.int64), "abaw2022")
        return {"au_f1": s["f1"], "au_accuracy": s["accuracy"], "au_score": s["score"], "au_f1_per_au": s["f1_per_au"]}

    overall, per_video = {}, {video: {} for video in labels}
    for name in tasks:
        preds = {v: predictions[v][name] for v in labels}
        golds = {v: labels[v][name] for v in labels}
        valid = {v: masks[v][name] for v in labels}
        overall |= keyed(name, *m.concatenate_valid(preds, golds, valid))
        for video, scores in m.per_video(lambda p, g: keyed(name, p, g), preds, golds, valid).items():
            per_video[video] |= scores
    return {"overall": overall, "per_video": per_video}


@pytest.fixture(scope="module")
def data():
    predictions, labels, masks = synthetic()
    return predictions, labels, masks, metrics_json(predictions, labels, masks, TASKS)


def linked_images(text: str) -> set[str]:
    return set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text))


def test_full_report_links_every_figure(tmp_path, data):
    predictions, labels, masks, metrics = data
    frame_time = {v: np.arange(n) / 30.0 for v, n in VIDEOS.items()}
    path = report.write_report(tmp_path / "run", title="Synthetic run", tasks=TASKS, predictions=predictions,
                               labels=labels, masks=masks, metrics=metrics, frame_time=frame_time, max_timelines=3)
    assert path == tmp_path / "run" / report.REPORT_NAME and path.is_file()
    text = path.read_text()
    assert text.startswith("# Synthetic run")
    for title in report.SECTION_TITLES.values():
        assert f"## {title}" in text
    written = {f"{p.parent.name}/{p.name}" for p in (path.parent / report.FIGURES_DIR).glob("*.png")}
    assert written == set(report.FIGURES) == linked_images(text)
    for figure in report.FIGURES:
        image = mpimg.imread(path.parent / figure)
        assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 300, (figure, image.shape)
        assert image[..., :3].std() > 0.01  # not a blank canvas
    assert f"| va_mean | {metrics['overall']['va_mean']:.3f} |" in text
    # the VA per-video table is sorted worst first
    va_part = text.split("### Per-video VA")[1].split("##")[0]
    order = [line.split("|")[1].strip() for line in va_part.splitlines() if line.startswith("| vid_")]
    assert order == sorted(VIDEOS, key=lambda v: metrics["per_video"][v]["va_mean"])


def test_va_only_report_has_no_expr_or_au(tmp_path, data):
    predictions, labels, masks, metrics = data
    report.write_report(tmp_path, title="all", tasks=TASKS, predictions=predictions, labels=labels, masks=masks,
                        metrics=metrics)
    va_only = {"va": TASKS["va"]}
    va_metrics = metrics_json(predictions, labels, masks, va_only)
    text = report.write_report(tmp_path, title="VA only", tasks=va_only, predictions=predictions, labels=labels,
                               masks=masks, metrics=va_metrics).read_text()
    assert "## " + report.SECTION_TITLES["va"] in text
    assert "EXPR" not in text and "AU" not in text and "expr_" not in text and "au_" not in text
    assert linked_images(text) == {report.VA_TIMELINES, report.VA_CCC_DISTRIBUTION}
    assert not (tmp_path / report.EXPR_CONFUSION).exists() and not (tmp_path / report.AU_F1).exists()


def test_confusion_matrix_counts_by_hand():
    gold = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    expected = np.array([[1, 1, 0],
                         [0, 2, 1],
                         [1, 0, 0]])
    counts = report.confusion_matrix(pred, gold, 3)
    np.testing.assert_array_equal(counts, expected)
    assert counts.dtype.kind == "i" and counts.sum() == len(gold)
    np.testing.assert_array_equal(report.confusion_matrix(pred, gold, 4)[3], 0)  # a class nobody has
    with pytest.raises(ValueError):
        report.confusion_matrix(pred, gold, 2)


def test_timeline_series_leaves_gaps_at_unscored_gold():
    gold = np.array([[0.1, 0.2], [VA_INVALID, VA_INVALID], [0.3, -0.4], [0.5, 0.6]], np.float32)
    pred = np.array([[0.0, 0.0], [0.9, -0.9], [0.2, 0.2], [0.4, 0.4]], np.float32)
    mask = np.array([True, True, True, False])  # frame 1 invalid gold, frame 3 not scored
    p, g = report.timeline_series(pred, gold, mask, va_task())
    np.testing.assert_allclose(p, pred)
    assert np.isnan(g[1]).all() and np.isnan(g[3]).all()
    np.testing.assert_allclose(g[[0, 2]], gold[[0, 2]], rtol=1e-6)
    assert np.nanmin(g) >= -1.0


def test_spread_selection_takes_best_median_worst():
    scores = {f"v{i}": float(i) for i in range(9)}
    assert report.spread_selection(scores, 3) == ["v8", "v4", "v0"]
    assert report.spread_selection(scores, 20) == [f"v{i}" for i in range(8, -1, -1)]
    assert report.spread_selection(scores, 0) == []
