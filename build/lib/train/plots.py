"""The training-curve figure of a run: training loss and validation scores per epoch, best epoch marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCORE_KEYS = ("objective", "va_mean", "valence", "arousal", "expr_f1", "expr_accuracy", "au_f1", "au_accuracy")


def training_curve(epochs: Sequence[dict[str, Any]], best_epoch: int, path: Path, title: str) -> Path:
    """Write a PNG: left, training loss terms per epoch; right, validation scores per epoch."""
    figure, (loss_axes, score_axes) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    x = [e["epoch"] for e in epochs]
    loss_keys = sorted({key for e in epochs for key in e["train_loss"]})  # alternating tasks start at other epochs
    for key in loss_keys:
        loss_axes.plot(x, [e["train_loss"].get(key, float("nan")) for e in epochs], label=key,
                       linewidth=2 if key == "loss" else 1)
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="training loss")
    selected_on = "val" if any("val" in e for e in epochs) else "train"
    for key in SCORE_KEYS:
        if any(key in e.get(selected_on, {}) for e in epochs):
            score_axes.plot(x, [e.get(selected_on, {}).get(key, float("nan")) for e in epochs], label=key,
                            linewidth=2 if key == "objective" else 1)
    score_axes.set(xlabel="epoch", ylabel="score", title=f"model selection scores ({selected_on} videos)")
    for axes in (loss_axes, score_axes):
        if best_epoch:
            axes.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
