"""Per-frame prediction CSVs (``python -m train predict`` / a run's ``predictions/``): ``<video_id>.csv`` with
``frame,<task columns>``, one row per frame (``time_s``, the frame's time in seconds, may follow ``frame``);
``valence,arousal`` floats, ``expr`` a class index, AU names 0/1."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from eval.tasks import TaskSpec
from features_store.errors import AffectsyncError


class PredictionError(AffectsyncError, ValueError):
    """A prediction file is missing, malformed, or lacks a task's columns."""


def read_predictions(folder: Path, tasks: Mapping[str, TaskSpec]) -> dict[str, dict[str, np.ndarray]]:
    """video id -> task -> per-frame decisions (va (T, 2) float, expr (T,) int64, au (T, K) int64) of every
    ``*.csv`` in ``folder``, for the ``tasks`` whose columns the files hold."""
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        raise PredictionError(f"{folder}: no prediction files (<video_id>.csv)")
    return {path.stem: read_prediction_file(path, tasks) for path in files}


def read_prediction_file(path: Path, tasks: Mapping[str, TaskSpec]) -> dict[str, np.ndarray]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0][:1] != ["frame"]:
        raise PredictionError(f"{path}: expected a header starting with 'frame'")
    header, body = rows[0], rows[1:]
    if any(len(row) != len(header) for row in body):
        raise PredictionError(f"{path}: every row must have the header's {len(header)} columns")
    try:
        table = np.array(body, dtype=np.float64).reshape(len(body), len(header))
    except ValueError as exc:
        raise PredictionError(f"{path}: a cell is not a number ({exc})") from exc
    if not np.array_equal(table[:, 0], np.arange(len(body))):
        raise PredictionError(f"{path}: frames must be 0..{len(body) - 1} in order, one row each")
    out = {}
    for name, spec in tasks.items():
        columns = spec.prediction_columns
        if not set(columns) <= set(header):
            continue
        values = table[:, [header.index(c) for c in columns]]
        out[name] = _checked(path, name, spec, values)
    if not out:
        raise PredictionError(f"{path}: no columns of the tasks {list(tasks)} (header {header})")
    return out


def _checked(path: Path, name: str, spec: TaskSpec, values: np.ndarray) -> np.ndarray:
    """(T, C) values as the task's decisions, range-checked: VA finite, EXPR a class index, AU 0/1."""
    if name == "va":
        if not np.isfinite(values).all():
            raise PredictionError(f"{path}: valence/arousal must be finite numbers")
        return values.astype(np.float32)
    if not np.array_equal(values, np.round(values)):
        raise PredictionError(f"{path}: {name} columns must hold integers")
    decisions = values.astype(np.int64)
    upper = spec.n_outputs if name == "expr" else 2
    if decisions.size and (decisions.min() < 0 or decisions.max() >= upper):
        raise PredictionError(f"{path}: {name} values must lie in 0..{upper - 1}")
    return decisions[:, 0] if name == "expr" else decisions
