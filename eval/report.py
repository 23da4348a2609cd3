"""A report a person would look at: ``report.md`` with PNG figures in ``figures/`` beside it (relative links).

Sections, one per task in ``tasks``:

- overall scores: the challenge numbers (valid frames of all videos concatenated), from ``metrics["overall"]``;
- VA: per-video valence/arousal timelines (prediction over gold, unscored gold frames left as gaps) for a spread of
  videos from best to worst, the distribution of per-video CCC with the concatenated CCC marked, a per-video table;
- EXPR: the confusion matrix over the scored frames of all videos (rows gold, columns predicted);
- AU: per-AU F1 bars with their mean.

Each section ends with a per-video table sorted worst first. The figures are drawn by :mod:`eval.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.metrics import ccc
from eval.plots import plot_au_f1, plot_ccc_distribution, plot_confusion, plot_va_timelines
from eval.tasks import TaskSpec

REPORT_NAME = "report.md"
FIGURES_DIR = "figures"
VA_TIMELINES = f"{FIGURES_DIR}/va_timelines.png"
VA_CCC_DISTRIBUTION = f"{FIGURES_DIR}/va_ccc_distribution.png"
EXPR_CONFUSION = f"{FIGURES_DIR}/expr_confusion.png"
AU_F1 = f"{FIGURES_DIR}/au_f1.png"
FIGURES = (VA_TIMELINES, VA_CCC_DISTRIBUTION, EXPR_CONFUSION, AU_F1)
"""Figure paths relative to the report's folder."""

SECTION_TITLES = {"va": "Valence and arousal (VA)", "expr": "Expression (EXPR)", "au": "Action units (AU)"}
OVERALL_KEYS = {
    "va": ("valence", "arousal", "va_mean"),
    "expr": ("expr_f1", "expr_accuracy", "expr_score"),
    "au": ("au_f1", "au_accuracy", "au_score"),
}
"""Scalar metric keys per task, in table order; the last one is the task's score (per-video tables sort on it)."""


# ---------------------------------------------------------------------------------------------------------- helpers

def confusion_matrix(pred: Any, gold: Any, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts of frames: entry [g, p] counts frames of gold class g predicted as class p.

    ``pred`` and ``gold`` are (N,) class indices in ``0 .. n_classes - 1`` (invalid frames already dropped).
    """
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    g = np.asarray(gold).reshape(-1).astype(np.int64)
    if p.shape != g.shape:
        raise ValueError(f"confusion_matrix: {p.shape[0]} predictions, {g.shape[0]} gold frames")
    if p.size and (min(p.min(), g.min()) < 0 or max(p.max(), g.max()) >= n_classes):
        raise ValueError(f"confusion_matrix: class index outside 0 .. {n_classes - 1}")
    return np.bincount(g * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def timeline_series(prediction: Any, gold: Any, mask: Any, task: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, gold) of one video as float64 (T, 2) arrays ready to plot, values in [-1, 1].

    Gold is NaN at every frame that is not scored (``mask`` False) or whose label is invalid (-5), so a line plot
    leaves a gap there instead of dropping to -5. The prediction is drawn at every frame.
    """
    pred = np.asarray(prediction, dtype=np.float64).reshape(-1, 2)
    gold_values = np.asarray(gold, dtype=np.float64).reshape(-1, 2)
    scored = np.asarray(mask, dtype=bool).reshape(-1) & task.valid(gold_values)
    return pred, np.where(scored[:, None], gold_values, np.nan)


def spread_selection(scores: Mapping[str, float], k: int) -> list[str]:
    """Up to ``k`` video ids from best to worst ``scores``, evenly spaced in rank so best, median and worst show."""
    ranked = sorted(scores, key=lambda video: (-scores[video], video))
    if k <= 0 or not ranked:
        return []
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, min(k, len(ranked)))).astype(int))
    return [ranked[i] for i in picks]


def _scored_mask(video: str, labels, masks, task: TaskSpec) -> np.ndarray:
    """(T,) bool: frames of ``video`` that ``masks`` scores and whose gold is valid."""
    gold = np.asarray(labels[video][task.name])
    return np.asarray(masks[video][task.name], dtype=bool).reshape(-1) & task.valid(gold)


def _scored(videos: Sequence[str], predictions, labels, masks, task: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, gold) of ``task`` over the scored, valid frames of ``videos``, concatenated (empty without any)."""
    if not videos:
        return np.zeros(0), np.zeros(0)
    keeps = [_scored_mask(video, labels, masks, task) for video in videos]
    return (np.concatenate([np.asarray(predictions[v][task.name])[k] for v, k in zip(videos, keeps)]),
            np.concatenate([np.asarray(labels[v][task.name])[k] for v, k in zip(videos, keeps)]))


def _va_per_video(videos, predictions, labels, masks, metrics, task) -> dict[str, tuple[float, float]]:
    """video -> (valence CCC, arousal CCC), from ``metrics["per_video"]`` or else computed; videos unscored left out."""
    result = {}
    for video in videos:
        entry = metrics.get("per_video", {}).get(video, {})
        if "valence" in entry and "arousal" in entry:
            result[video] = (float(entry["valence"]), float(entry["arousal"]))
            continue
        pred, gold = _scored([video], predictions, labels, masks, task)
        if len(gold):
            result[video] = (ccc(pred[:, 0], gold[:, 0]), ccc(pred[:, 1], gold[:, 1]))
    return result


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _per_video_table(videos, labels, masks, metrics, task: TaskSpec) -> list[str]:
    """Markdown table of the per-video scores of ``task``, worst first by its score key."""
    keys = OVERALL_KEYS[task.name]
    per_video = metrics.get("per_video", {})
    scored = [v for v in videos if all(k in per_video.get(v, {}) for k in keys)]
    if not scored:
        return ["_No per-video scores in the metrics._"]
    scored.sort(key=lambda v: (per_video[v][keys[-1]], v))
    rows = [[v, int(np.count_nonzero(_scored_mask(v, labels, masks, task)))] + [float(per_video[v][k]) for k in keys]
            for v in scored]
    return _table(["video", "scored frames", *keys], rows)


# ---------------------------------------------------------------------------------------------------------- sections

def _va_section(out_dir, task, videos, predictions, labels, masks, metrics, frame_time, max_timelines) -> list[str]:
    per_video = _va_per_video(videos, predictions, labels, masks, metrics, task)
    if not per_video:
        return ["_No scored VA frames._"]
    overall = metrics.get("overall", {})
    if "valence" in overall and "arousal" in overall:
        concatenated = (float(overall["valence"]), float(overall["arousal"]))
    else:
        pred, gold = _scored(videos, predictions, labels, masks, task)
        concatenated = (ccc(pred[:, 0], gold[:, 0]), ccc(pred[:, 1], gold[:, 1]))
    chosen = spread_selection({v: sum(s) / 2 for v, s in per_video.items()}, max_timelines)
    lines = []
    if chosen:
        series = {}
        for video in chosen:
            pred, gold = timeline_series(predictions[video]["va"], labels[video]["va"], masks[video]["va"], task)
            times = (frame_time or {}).get(video)
            x = np.asarray(times, dtype=np.float64) if times is not None and len(times) == len(pred) \
                else np.arange(len(pred))
            series[video] = (x, pred, gold)
        plot_va_timelines(out_dir / VA_TIMELINES, series, per_video, "time (s)" if frame_time else "frame")
        lines += [f"![VA timelines]({VA_TIMELINES})", "",
                  f"Prediction (orange) over gold (black) for {len(chosen)} of {len(per_video)} videos, best to "
                  "worst by mean per-video CCC; gaps in gold are frames that are not scored.", ""]
    plot_ccc_distribution(out_dir / VA_CCC_DISTRIBUTION, per_video, concatenated)
    lines += [f"![Per-video CCC distribution]({VA_CCC_DISTRIBUTION})", "",
              f"Per-video CCC; the red diamond is the challenge number (valence {concatenated[0]:.3f}, arousal "
              f"{concatenated[1]:.3f}), which is not the mean over videos.", "",
              "### Per-video VA (worst first)", ""]
    return lines + _per_video_table(videos, labels, masks, metrics, task)


def _expr_section(out_dir, task, videos, predictions, labels, masks, metrics) -> list[str]:
    pred, gold = _scored(videos, predictions, labels, masks, task)
    if not len(gold):
        return ["_No scored EXPR frames._"]
    counts = confusion_matrix(pred, gold, task.n_outputs)
    plot_confusion(out_dir / EXPR_CONFUSION, counts, task.columns)
    return [f"![EXPR confusion matrix]({EXPR_CONFUSION})", "",
            f"Rows gold, columns predicted, over the {int(counts.sum())} scored frames of all videos; cells count "
            "frames, colour is the fraction of the gold row.", "", "### Per-video EXPR (worst first)", "",
            *_per_video_table(videos, labels, masks, metrics, task)]


def _au_section(out_dir, task, videos, predictions, labels, masks, metrics) -> list[str]:
    pred, gold = _scored(videos, predictions, labels, masks, task)
    if not len(gold):
        return ["_No scored AU frames._"]
    f1_per_au = metrics.get("overall", {}).get("au_f1_per_au")
    if f1_per_au is None:  # computed as eval.metrics.au_score does
        p, g = pred.astype(bool), gold.astype(bool)
        tp, fp, fn = (p & g).sum(0), (p & ~g).sum(0), (~p & g).sum(0)
        f1_per_au = np.divide(2.0 * tp, 2 * tp + fp + fn, out=np.zeros(tp.shape), where=2 * tp + fp + fn > 0)
    plot_au_f1(out_dir / AU_F1, f1_per_au, task.columns, positive_rate=gold.mean(axis=0))
    return [f"![Per-AU F1]({AU_F1})", "",
            f"F1 per AU over the {len(gold)} scored frames of all videos; the percentage under each name is how "
            "often gold has the AU.", "", "### Per-video AU (worst first)", "",
            *_per_video_table(videos, labels, masks, metrics, task)]


def write_report(out_dir: Path, *, title: str, tasks: Mapping[str, TaskSpec],
                 predictions: Mapping[str, Mapping[str, np.ndarray]],
                 labels: Mapping[str, Mapping[str, np.ndarray]],
                 masks: Mapping[str, Mapping[str, np.ndarray]],
                 metrics: Mapping[str, Any],
                 frame_time: Mapping[str, np.ndarray] | None = None,
                 max_timelines: int = 8) -> Path:
    """Write ``out_dir/report.md`` and its figures under ``out_dir/figures/``; return the report's path.

    ``predictions[video][task]`` are per-frame decisions (VA (T, 2) in [-1, 1], EXPR (T,) class index, AU (T, K)
    0/1), ``labels`` the gold in the organisers' coding and ``masks`` the (T,) bool scored frames, for every video in
    ``labels``. ``metrics`` is the eval metrics.json content (``overall`` and ``per_video`` score dicts).
    ``frame_time[video]`` gives the (T,) frame times in seconds for the timelines' x axis (frame index without it).
    At most ``max_timelines`` videos get a VA timeline. Figures of this module from an earlier report that this one
    does not draw are removed, so every figure in ``figures/`` is linked.
    """
    out_dir = Path(out_dir)
    (out_dir / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    for figure in FIGURES:
        (out_dir / figure).unlink(missing_ok=True)
    overall = metrics.get("overall", {})
    lines = [f"# {title}", "", "## Overall scores", "",
             "Challenge-style: the scored frames of all videos concatenated, each metric computed once.", ""]
    rows = [[key, float(overall[key])] for task in tasks for key in OVERALL_KEYS.get(task, ()) if key in overall]
    if "objective" in overall:
        rows.append(["objective", float(overall["objective"])])
    lines += _table(["metric", "value"], rows) if rows else ["_No overall scores in the metrics._"]
    for name, task in tasks.items():
        videos = sorted(v for v in labels if name in labels[v] and v in predictions and name in predictions[v])
        frames = sum(int(np.count_nonzero(_scored_mask(v, labels, masks, task))) for v in videos)
        lines += ["", f"## {SECTION_TITLES[name]}", "", f"{len(videos)} videos, {frames} scored frames.", ""]
        if name == "va":
            lines += _va_section(out_dir, task, videos, predictions, labels, masks, metrics, frame_time,
                                 max_timelines)
        elif name == "expr":
            lines += _expr_section(out_dir, task, videos, predictions, labels, masks, metrics)
        else:
            lines += _au_section(out_dir, task, videos, predictions, labels, masks, metrics)
    path = out_dir / REPORT_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
