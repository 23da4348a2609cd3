"""The report's figures, drawn with matplotlib's Agg backend at :data:`DPI` dots per inch: valence/arousal
timelines, the distribution of per-video CCC, the EXPR confusion matrix and per-AU F1 bars. Each takes the numbers to
draw and a PNG path, and returns the path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100


def plot_va_timelines(path: Path, series: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                      scores: Mapping[str, tuple[float, float]], x_label: str) -> Path:
    """PNG, one row per video: valence (left) and arousal (right) in [-1, 1], prediction drawn over gold.

    ``series[video]`` is ``(x, prediction, gold)`` with x the frame time in seconds or the frame index (``x_label``
    says which) and (T, 2) prediction and gold (gold NaN where not scored, see :func:`eval.report.timeline_series`).
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
