"""A report a person would look at: ``report.md`` with PNG figures in ``figures/`` beside it (relative links).

Sections, one per task in ``tasks``:

- overall scores: the challenge numbers (valid frames of all videos concatenated), from ``metrics["overall"]``;
- VA: per-video valence/arousal timelines (prediction over gold, unscored gold frames left as gaps) for a spread of
  videos from best to worst, the distribution of per-video CCC with the concatenated CCC marked, a per-video table;
- EXPR: the confusion matrix over the scored frames of all videos (rows gold, columns predicted);
- AU: per-AU F1 bars with their mean.

Each section ends with a per-video table sorted worst first. Figures are drawn with matplotlib's Agg backend at
:data:`DPI` dots per inch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eval.metrics import ccc  # noqa: E402
from eval.tasks import TaskSpec  # noqa: E402

REPORT_NAME = "report.md"
FIGURES_DIR = "figures"
VA_TIMELINES = f"{FIGURES_DIR}/va_timelines.png"
VA_CCC_DISTRIBUTION = f"{FIGURES_DIR}/va_ccc_distribution.png"
EXPR_CONFUSION = f"{FIGURES_DIR}/expr_confusion.png"
AU_F1 = f"{FIGURES_DIR}/au_f1.png"
FIGURES = (VA_TIMELINES, VA_CCC_DISTRIBUTION, EXPR_CONFUSION, AU_F1)
"""Figure paths relative to the report's folder."""
DPI = 100

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


# ---------------------------------------------------------------------------------------------------------- figures

def plot_va_timelines(path: Path, series: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                      scores: Mapping[str, tuple[float, float]], x_label: str) -> Path:
    """PNG, one row per video: valence (left) and arousal (right) in [-1, 1], prediction drawn over gold.

    ``series[video]`` is ``(x, prediction, gold)`` with x the frame time in seconds or the frame index (``x_label``
    says which) and (T, 2) prediction and gold (gold NaN where not scored, see :func:`timeline_series`).
    """
    figure, axes = plt.subplots(len(series), 2, figsize=(12, 1.9 * len(series) + 0.6), squeeze=False,
                                constrained_layout=True, sharey=True)
    for row, (video, (x, pred, gold)) in enumerate(series.items()):
        for column, name in enumerate(("valence", "arousal")):
            ax = axes[row, column]
            ax.plot(x, gold[:, column], color="black", linewidth=1.2, label="gold")
            ax.plot(x, pred[:, column], color="tab:orange", linewidth=0.9, alpha=0.85, label="prediction")
            ax.set_ylim(-1.05, 1.05)
            ax.axhline(0, color="grey", linewidth=0.5)
            ax.set_title(f"{video}: {name} CCC {scores[video][column]:.3f}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(series) - 1:
                ax.set_xlabel(x_label)
    axes[0, 0].set_ylabel("value")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def plot_ccc_distribution(path: Path, per_video: Mapping[str, tuple[float, float]],
                          overall: tuple[float, float]) -> Path:
    """PNG: per-video CCC (unitless, [-1, 1]) of valence and arousal as a box plot with the videos as jittered dots;
    the mean over videos as a triangle and the concatenated (challenge) CCC as a red diamond."""
    values = np.array(list(per_video.values()), dtype=np.float64).reshape(-1, 2)
    figure, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    ax.boxplot([values[:, 0], values[:, 1]], positions=[0, 1], widths=0.5, showfliers=False, showmeans=True,
               medianprops={"color": "black"},
               meanprops={"marker": "^", "markerfacecolor": "tab:green", "markeredgecolor": "tab:green"})
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, size=values.shape)
    for column in (0, 1):
        ax.scatter(column + jitter[:, column], values[:, column], s=14, alpha=0.6, color="tab:blue",
                   label="one video" if column == 0 else None)
    ax.scatter([0, 1], overall, marker="D", s=60, color="tab:red", zorder=3, label="all videos concatenated")
    ax.plot([], [], "^", color="tab:green", label="mean over videos")
    ax.set_xticks([0, 1], ["valence", "arousal"])
    ax.set(ylabel="CCC", ylim=(-1.05, 1.05), title=f"per-video CCC ({len(values)} videos)")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left")
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def plot_confusion(path: Path, counts: np.ndarray, class_names: Sequence[str]) -> Path:
    """PNG: the (C, C) confusion matrix, rows gold and columns predicted; cells show frame counts, colour the
    fraction of the gold row (row-normalised, 0 for a class absent from gold)."""
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape, np.float64), where=totals > 0)
    size = 1.5 + 0.75 * len(class_names)
    figure, ax = plt.subplots(figsize=(size + 1.2, size), constrained_layout=True)
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    for (g, p), count in np.ndenumerate(counts):
        ax.text(p, g, str(count), ha="center", va="center", fontsize=8,
                color="white" if fractions[g, p] > 0.5 else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, [f"{name} ({int(n)})" for name, n in zip(class_names, totals[:, 0])])
    ax.set(xlabel="predicted", ylabel="gold (frames)", title=f"expression confusion ({int(counts.sum())} frames)")
    figure.colorbar(image, ax=ax, shrink=0.8, label="fraction of gold row")
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def plot_au_f1(path: Path, f1_per_au: Sequence[float], au_names: Sequence[str],
               positive_rate: Sequence[float] | None = None) -> Path:
    """PNG: F1 (unitless, [0, 1]) of each AU as bars with the mean F1 as a dashed line; ``positive_rate``, the
    fraction of scored frames where gold has the AU, is written under each AU name when given."""
    f1 = np.asarray(f1_per_au, dtype=np.float64)
    names = list(au_names) if positive_rate is None else [f"{n}\n{r:.0%}" for n, r in zip(au_names, positive_rate)]
    figure, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(f1) + 2), 4), constrained_layout=True)
    bars = ax.bar(np.arange(len(f1)), f1, color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(f1.mean(), color="tab:red", linestyle="--", label=f"mean F1 {f1.mean():.3f}")
    ax.set_xticks(np.arange(len(f1)), names, fontsize=8)
    xlabel = "action unit" + ("" if positive_rate is None else " (gold positive rate)")
    ax.set(xlabel=xlabel, ylabel="F1", ylim=(0, 1.05), title="per-AU F1 (all videos concatenated)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


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
