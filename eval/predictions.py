"""Per-frame prediction CSVs (``python -m train predict`` / a run's ``predictions/``): ``<video_id>.csv`` with
``frame,<task columns>``, one row per frame; ``valence,arousal`` floats, ``expr`` a class index, AU names 0/1."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from train.tasks import TaskSpec


class PredictionError(ValueError):
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
    frames = [int(row[0]) for row in body]
    if frames != list(range(len(body))):
        raise PredictionError(f"{path}: frames must be 0..{len(body) - 1} in order, one row each")
    out = {}
    for name, spec in tasks.items():
        columns = spec.prediction_columns
        if not set(columns) <= set(header):
            continue
        index = [header.index(c) for c in columns]
        values = np.array([[row[i] for i in index] for row in body], dtype=np.float64).reshape(len(body), -1)
        if name == "va":
            out[name] = values.astype(np.float32)
        else:
            out[name] = values.astype(np.int64)[:, 0] if name == "expr" else values.astype(np.int64)
    if not out:
        raise PredictionError(f"{path}: no columns of the tasks {list(tasks)} (header {header})")
    return out
