"""What every label source becomes: a :class:`LabelSet` in the organisers' coding (see :mod:`eval.tasks`), checked
row by row against each task's coding; :class:`LabelError` names the file and the cause on one line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.tasks import AU_INVALID, EXPR_INVALID, TASK_ORDER, VA_INVALID, TaskSpec, au_task, expr_task, va_task
from features_store.errors import AffectsyncError

SPLITS = ("train", "val")
TASK_SPECS = {"va": va_task, "expr": expr_task, "au": au_task}
"""Task name -> its spec for a protocol."""


class LabelError(AffectsyncError, ValueError):
    """Labels that cannot be read or used; the message names the file and the cause on one line."""


@dataclass
class LabelSet:
    """Labels of every video, per task, in the organisers' coding (see eval.tasks), and the split of each video."""

    tasks: dict[str, TaskSpec]                # task name -> spec, in TASK_ORDER order
    labels: dict[str, dict[str, np.ndarray]]  # video id -> task -> (N, ...) labels; N = 1 for per-clip videos
    splits: dict[str, dict[str, str]]         # task -> video id -> "train" | "val"; empty when the source has none
    per_clip: set[str] = field(default_factory=set)  # video ids whose single row is broadcast over all frames
    source: str = ""                          # the path loaded
    layout_name: str = "csv"                  # "abaw3", "abaw2021", "abaw2020" or "csv"
    out_of_range: dict[str, dict[str, int]] = field(default_factory=dict)
    """File -> task -> frames whose label lay outside the task's coding and were masked (the label report)."""

    def video_ids(self) -> list[str]:
        """Sorted ids of the videos with any label."""
        return sorted(self.labels)

    def layout(self) -> str:
        """Where the labels came from: ``abaw3``, ``abaw2021``, ``abaw2020`` (Aff-Wild2 folders) or ``csv``."""
        return self.layout_name


def select_tasks(available: Sequence[str], requested: Sequence[str] | None, source: Path) -> list[str]:
    """The tasks to load, in TASK_ORDER order: ``requested`` if the labels have them all, else every available one."""
    if requested is None:
        return [task for task in TASK_ORDER if task in available]
    unknown = [task for task in requested if task not in TASK_ORDER]
    if unknown:
        raise LabelError(f"{source}: unknown task(s) {', '.join(unknown)}; tasks are {', '.join(TASK_ORDER)}")
    missing = [task for task in requested if task not in available]
    if missing:
        raise LabelError(f"{source}: no {', '.join(missing)} labels here; the labels have "
                         f"{', '.join(available) or 'no task'}")
    return [task for task in TASK_ORDER if task in requested]


INVALID_CODES = {"va": VA_INVALID, "expr": EXPR_INVALID, "au": AU_INVALID}


def _bad_entries(spec: TaskSpec, values: np.ndarray) -> np.ndarray:
    """Bool, like ``values``: entries outside the task's coding (VA in [-1, 1] or -5, EXPR a class index or -1, AU
    0/1/-1)."""
    if spec.name == "va":
        return ~((np.abs(values) <= 1.0) | (values == VA_INVALID))
    if spec.name == "expr":
        return (values != np.round(values)) | (values < EXPR_INVALID) | (values >= spec.n_outputs)
    return ~np.isin(values, (0.0, 1.0, AU_INVALID))


def _coded(spec: TaskSpec, values: np.ndarray) -> np.ndarray:
    """Checked float values as the task's array: va (N, 2) float32, expr (N,) int64, au (N, K) float32."""
    return values.astype(np.int64) if spec.name == "expr" else values.astype(np.float32)


def _describe_coding(spec: TaskSpec) -> str:
    if spec.name == "va":
        return f"values in [-1, 1] or {VA_INVALID:g} (invalid)"
    if spec.name == "expr":
        return f"a class index 0..{spec.n_outputs - 1} or {EXPR_INVALID} (invalid)"
    return f"0, 1 or {AU_INVALID:g} (invalid)"


def checked(path: Path, spec: TaskSpec, rows, where: Callable[[int, np.ndarray], str],
            out_of_range: dict[str, dict[str, int]] | None = None) -> np.ndarray:
    """Rows of one task's values checked against its coding and turned into its array. A value outside the coding is
    set to the invalid code and its row counted in ``out_of_range[str(path)][task]`` (TSAV: Aff-Wild2 has such rows);
    without ``out_of_range`` (``--strict-labels``) it is a :class:`LabelError`, ``where(row, values)`` saying where
    the row is in the file."""
    values = np.asarray(rows, np.float64).reshape(len(rows), -1)
    if spec.name == "expr":
        values = values[:, 0]
    bad = _bad_entries(spec, values)
    bad_rows = bad if bad.ndim == 1 else bad.any(axis=1)
    if bad_rows.any():
        if out_of_range is None:
            first = int(np.argmax(bad_rows))
            raise LabelError(f"{path}: {where(first, values[first])}, expected {_describe_coding(spec)}")
        values = np.where(bad, INVALID_CODES[spec.name], values)
        counts = out_of_range.setdefault(str(path), {})
        counts[spec.name] = counts.get(spec.name, 0) + int(bad_rows.sum())
    return _coded(spec, values)
