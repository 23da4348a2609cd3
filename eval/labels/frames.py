"""Labels made exactly as long as the features: trim from the end, or pad by repeating the last row, each logged."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from eval.labels.label_set import LabelSet

LOG = logging.getLogger("affectsync.labels")


def fit_to_frames(label_set: LabelSet, n_frames: Mapping[str, int]
                  ) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Labels with exactly T rows for each video both labelled and in ``n_frames`` (video id -> T frames).

    Every task of the set is present for every such video (a task the video lacks: ``TaskSpec.empty(T)``, all
    invalid). Per-clip rows are broadcast to T frames; longer labels are trimmed from the end, shorter ones padded by
    repeating the last row. Returns (video id -> task -> array, messages): one message per length mismatch, also
    logged at WARNING, and one per labelled video missing from ``n_frames`` (skipped; logged as one summary line).
    Videos in ``n_frames`` without labels are left out.
    """
    aligned: dict[str, dict[str, np.ndarray]] = {}
    messages: list[str] = []
    skipped: list[str] = []
    for video in label_set.video_ids():
        if video not in n_frames:
            skipped.append(video)
            continue
        frames = int(n_frames[video])
        aligned[video] = {}
        for task, spec in label_set.tasks.items():
            rows = label_set.labels[video].get(task)
            if rows is None or len(rows) == 0:
                aligned[video][task] = spec.empty(frames)
                if rows is not None and frames:
                    message = (f"video {video}: {task} labels have 0 rows, features {frames} frames: "
                               f"all {frames} frames marked invalid")
                    messages.append(message)
                    LOG.warning(message)
            elif video in label_set.per_clip:
                aligned[video][task] = np.repeat(rows[:1], frames, axis=0)
            else:
                aligned[video][task], message = _fit_rows(rows, frames, f"video {video}: {task} labels")
                if message:
                    messages.append(message)
                    LOG.warning(message)
    messages += [f"video {video}: labelled but not in the store; skipped" for video in skipped]
    if skipped:
        LOG.warning("%d labelled video(s) not in the store, skipped: %s%s", len(skipped), ", ".join(skipped[:10]),
                    " ..." if len(skipped) > 10 else "")
    return aligned, messages


def _fit_rows(rows: np.ndarray, frames: int, what: str) -> tuple[np.ndarray, str | None]:
    """``rows`` (N >= 1 rows) made exactly ``frames`` long, and the message saying what was done (None if nothing)."""
    difference = len(rows) - frames
    if difference == 0:
        return rows.copy(), None
    said = f"{what} have {len(rows)} rows, features {frames} frames: "
    if difference > 0:
        return rows[:frames].copy(), said + f"trimmed {_rows(difference)} from the end"
    padding = np.repeat(rows[-1:], -difference, axis=0)
    return np.concatenate([rows, padding]), said + f"padded {_rows(-difference)} by repeating the last row"


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"
