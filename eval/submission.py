"""Submission files in the organisers' format: one ``<video>.txt`` per video and task, a header line, then one line per
video frame in a fixed column order.

- VA: header ``valence,arousal``, lines ``v,a`` (six decimals).
- EXPR: header of the class names (``Neutral,Anger,...``), lines with the class index.
- AU: header of the AU names, lines of 0/1 per AU.

Folders are named like the challenge's annotation folders (``VA_Estimation_Challenge``, ... for ABAW3 onward;
``VA_Set``, ... for ABAW 2020). A prediction shorter than the video's frame count is padded by repeating its last
row; a longer one is trimmed from the end; both are logged.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from eval.tasks import TaskSpec

LOG = logging.getLogger("affectsync.eval")

SUBMISSION_FOLDERS = {
    "abaw2022": {"va": "VA_Estimation_Challenge", "expr": "EXPR_Classification_Challenge",
                 "au": "AU_Detection_Challenge"},
    "abaw2020": {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"},
    "abaw2021": {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"},
}


def fit_length(rows: np.ndarray, n_frames: int) -> tuple[np.ndarray, str | None]:
    """``rows`` with exactly ``n_frames`` rows (pad by repeating the last row, or trim from the end) and a note."""
    if len(rows) == n_frames:
        return rows, None
    if len(rows) > n_frames:
        return rows[:n_frames], f"trimmed {len(rows) - n_frames} rows from the end"
    if len(rows) == 0:
        raise ValueError("no prediction rows to pad")
    padding = np.repeat(rows[-1:], n_frames - len(rows), axis=0)
    return np.concatenate([rows, padding]), f"padded {n_frames - len(rows)} rows by repeating the last"


def format_rows(task: TaskSpec, rows: np.ndarray) -> list[str]:
    """One text line per frame in the organisers' column order."""
    if task.name == "va":
        return [f"{v:.6f},{a:.6f}" for v, a in np.clip(rows, -1, 1)]
    if task.name == "expr":
        return [str(int(c)) for c in rows]
    return [",".join(str(int(v)) for v in row) for row in rows]


def write_submission(predictions: Mapping[str, Mapping[str, np.ndarray]], tasks: Mapping[str, TaskSpec],
                     n_frames: Mapping[str, int], out_dir: Path) -> list[Path]:
    """Write ``out_dir/<challenge folder>/<video>.txt`` for every video and task; ``n_frames`` is each video's frame
    count (the length the organisers expect; a listed video without predictions is warned about). The folder is
    emptied first, so it holds exactly this submission. Returns the files written."""
    for video_id in sorted(set(n_frames) - set(predictions)):
        LOG.warning("submission: no prediction for %s: no file written for it", video_id)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    written = []
    for video_id, by_task in sorted(predictions.items()):
        for name, rows in by_task.items():
            task = tasks[name]
            fitted, note = fit_length(np.asarray(rows), n_frames[video_id])
            if note:
                LOG.warning("submission %s/%s: %s (prediction %d rows, video %d frames)", name, video_id, note,
                            len(rows), n_frames[video_id])
            folder = out_dir / SUBMISSION_FOLDERS[task.protocol][name]
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{video_id}.txt"
            path.write_text("\n".join([",".join(task.columns), *format_rows(task, fitted)]) + "\n")
            written.append(path)
    return written
