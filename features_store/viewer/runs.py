"""A training run's per-frame predictions and the labels it was trained on, as the viewer draws them (``view --run``).

A run (``python -m train``) is ``runs/<name>/`` with ``config.json`` and ``predictions/<video_id>.csv`` (one fold), or
``fold<k>/`` folders holding those (several folds). A prediction CSV has ``frame,time_s`` then the tasks' columns:
``valence,arousal``; ``expr`` (a class index); the AU names (0/1). For each video the viewer shows the fold that
validated it (its honest prediction), else the first fold that predicted it, and says which.

Labels are read from the file or folder the run's ``config.json`` names (``labels``; ``view --labels`` replaces it),
in the two layouts of ``python -m train``: a generic CSV (``video`` or ``file``, optional ``frame``, task columns,
renamed by the run's ``label_columns``) or Aff-Wild2 folders (``<challenge>/<split>/<video_id>.txt``: a header
naming the columns, then line k is frame k). This reader is for drawing only: ``eval.labels`` remains what training
and scoring use (it also masks out-of-range values and applies the length rules, which the viewer does not: a label
file longer than the video is cut, a shorter one leaves the last frames unlabelled). Invalid labels (-5 VA, -1 EXPR
and AU) are drawn as gaps. The layers forbid ``features_store`` to import ``eval``, hence this small reader.
"""

from __future__ import annotations

import csv
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from features_store.errors import AffectsyncError


class RunReadError(AffectsyncError, FileNotFoundError):
    """No run, or no readable predictions, where ``--run`` points (the message names the folder)."""


def _model_dirs(run_dir: Path) -> list[Path]:
    """The folders of a run holding ``predictions/``: the run itself, or its ``fold<k>`` folders in fold order."""
    if (run_dir / "predictions").is_dir():
        return [run_dir]
    folds = sorted((p for p in run_dir.iterdir() if re.fullmatch(r"fold\d+", p.name) and (p / "predictions").is_dir()),
                   key=lambda p: int(p.name[4:])) if run_dir.is_dir() else []
    if not folds:
        raise RunReadError(f"{run_dir}: no predictions/ here or in fold*/ (give --run a run folder of python -m train)")
    return folds


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


class RunPredictions:
    """The predictions (and labels) of the run at ``run_dir``; ``labels`` replaces the labels its config names."""

    def __init__(self, run_dir: str | Path, labels: str | Path | None = None):
        self.run_dir = Path(run_dir)
        self.model_dirs = _model_dirs(self.run_dir)
        self.configs = {}
        for folder in self.model_dirs:
            try:
                self.configs[folder] = json.loads((folder / "config.json").read_text())
            except (OSError, ValueError) as exc:
                raise RunReadError(f"{folder / 'config.json'}: cannot read it ({exc})") from exc
        first = self.configs[self.model_dirs[0]]
        self.tasks: dict[str, list[str]] = {name: list(spec["columns"]) for name, spec in first["tasks"].items()}
        labels_path = labels if labels is not None else first.get("labels")
        self.labels = (LabelReader(Path(labels_path), dict(first.get("label_columns") or {}))
                       if labels_path and Path(labels_path).exists() else None)
        self.labels_missing = None if self.labels is not None or not labels_path else (
            f"labels {labels_path} not found (run the viewer where the run was made, or give --labels)")
        self._lock = threading.Lock()
        self._cache: dict[str, dict[str, Any] | None] = {}

    def _fold_of(self, video_id: str) -> tuple[Path, str | None] | None:
        """The model folder whose predictions to show for ``video_id`` and the video's role there."""
        have = [d for d in self.model_dirs if (d / "predictions" / f"{video_id}.csv").is_file()]
        for folder in have:
            if video_id in (self.configs[folder].get("fold") or {}).get("val", []):
                return folder, "val"
        if not have:
            return None
        role = "train" if video_id in (self.configs[have[0]].get("fold") or {}).get("train", []) else None
        return have[0], role

    def _load(self, video_id: str, n_frames: int) -> dict[str, Any] | None:
        with self._lock:
            if video_id in self._cache:
                return self._cache[video_id]
        found = self._fold_of(video_id)
        loaded = None
        if found is not None:
            folder, role = found
            path = folder / "predictions" / f"{video_id}.csv"
            with path.open(newline="") as handle:
                rows = list(csv.reader(handle))
            if not rows or rows[0][:1] != ["frame"]:
                raise RunReadError(f"{path}: expected a header starting with 'frame'")
            header = rows[0]
            table = np.full((n_frames, len(header)), np.nan)
            body = np.array([[_number(cell) for cell in row] for row in rows[1:n_frames + 1]], dtype=np.float64)
            if len(body):
                table[:len(body)] = body.reshape(len(body), len(header))
            labels = self.labels.read(video_id, self.tasks, n_frames) if self.labels is not None else {}
            tasks = {}
            for task, columns in self.tasks.items():
                wanted = ["expr"] if task == "expr" else columns
                if not set(wanted) <= set(header):
                    continue
                prediction = table[:, [header.index(c) for c in wanted]]
                tasks[task] = {"prediction": prediction[:, 0] if task == "expr" else prediction,
                               "label": labels.get(task)}
            loaded = {"fold": folder.name if folder != self.run_dir else None, "role": role, "tasks": tasks,
                      "file": str(path)}
        with self._lock:
            self._cache[video_id] = loaded
        return loaded

    def tasks_for(self, video_id: str) -> dict[str, Any]:
        """Task -> what the page draws for ``video_id`` (columns, classes, fold, role, whether labels were found);
        empty when the run did not predict it."""
        found = self._fold_of(video_id)
        if found is None:
            return {}
        folder, role = found
        return {task: {"kind": {"va": "values", "expr": "classes"}.get(task, "binary"), "columns": columns,
                       "fold": folder.name if folder != self.run_dir else None, "role": role,
                       "labels": self.labels is not None, "labels_missing": self.labels_missing}
                for task, columns in self.tasks.items()}

    def range(self, video_id: str, edges: np.ndarray, exact: bool, n_frames: int) -> dict[str, Any]:
        """Task -> ``prediction`` and ``label`` per column between frame ``edges``: VA means (categorical EXPR: the
        column's first frame; AU: the fraction of frames with the unit on), None where nothing valid."""
        loaded = self._load(video_id, n_frames)
        if loaded is None:
            return {}
        out = {}
        for task, entry in loaded["tasks"].items():
            out[task] = {"prediction": _binned(task, entry["prediction"], edges, exact, is_label=False),
                         "label": (None if entry["label"] is None
                                   else _binned(task, entry["label"], edges, exact, is_label=True))}
        return out

    def at(self, video_id: str, index: int, n_frames: int) -> dict[str, Any]:
        """Task -> the prediction and label of frame ``index`` (None where none or invalid)."""
        edges = np.array([index, index + 1])
        return {task: {key: (values[0] if values is not None else None) for key, values in entry.items()}
                for task, entry in self.range(video_id, edges, True, n_frames).items()}


def _invalid_as_nan(task: str, values: np.ndarray, is_label: bool) -> np.ndarray:
    values = values.astype(np.float64)
    if is_label:
        limit = -1.0 - 1e-6 if task == "va" else 0.0
        values = np.where(values < limit, np.nan, values)
    return values


def _binned(task: str, values: np.ndarray, edges: np.ndarray, exact: bool, is_label: bool) -> list:
    """Per-column values between ``edges`` as JSON lists (None: nothing valid)."""
    values = _invalid_as_nan(task, values, is_label)
    starts = edges[:-1]
    if task == "expr" or not exact:
        picked = values[starts]
    else:
        rows = values[int(edges[0]):int(edges[-1])]
        shaped = rows.reshape(len(rows), -1)
        valid = np.isfinite(shaped)
        sums = np.add.reduceat(np.where(valid, shaped, 0.0), starts - edges[0], axis=0)
        counts = np.add.reduceat(valid.astype(np.float64), starts - edges[0], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            picked = (sums / counts).reshape(len(starts), *rows.shape[1:])
    rounded = np.round(picked, 3)
    return np.where(np.isnan(rounded), None, rounded).tolist()


class LabelReader:
    """Labels of one video at a time from a generic CSV or an Aff-Wild2 folder (see the module docstring)."""

    def __init__(self, path: Path, column_map: dict[str, str]):
        self.path = path
        self.column_map = column_map
        self._lock = threading.Lock()
        self._csv_rows: dict[str, list[dict[str, str]]] | None = None
        self._txt_files: dict[str, list[Path]] | None = None

    def read(self, video_id: str, tasks: dict[str, list[str]], n_frames: int) -> dict[str, np.ndarray]:
        """Task -> (T, ...) labels of ``video_id`` (VA (T, 2) float, EXPR (T,) class index, AU (T, K) 0/1; invalid
        codes where unlabelled); tasks without labels for it are left out."""
        with self._lock:
            if self.path.is_dir():
                return self._read_folder(video_id, tasks, n_frames)
            return self._read_csv(video_id, tasks, n_frames)

    def _read_csv(self, video_id: str, tasks: dict[str, list[str]], n_frames: int) -> dict[str, np.ndarray]:
        if self._csv_rows is None:
            grouped: dict[str, list[dict[str, str]]] = {}
            with self.path.open(newline="", encoding="utf-8-sig") as handle:
                for row in csv.DictReader(handle):
                    row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                    name = row.get("video") or Path(row.get("file", "")).stem
                    grouped.setdefault(name, []).append(row)
            self._csv_rows = grouped
        rows = self._csv_rows.get(video_id, [])
        if not rows:
            return {}
        out = {}
        for task, columns in tasks.items():
            names = ["expr"] if task == "expr" else columns
            source = [self.column_map.get(name, name) for name in names]
            if not all(name in rows[0] for name in source):
                continue
            invalid = -5.0 if task == "va" else -1.0
            labels = np.full((n_frames, len(source)), invalid)
            for row in rows:
                values = [_label_value(task, row[name], columns) for name in source]
                frame = row.get("frame", "")
                if frame == "":
                    labels[:] = values  # one row per clip: every frame
                elif 0 <= int(float(frame)) < n_frames:
                    labels[int(float(frame))] = values
            out[task] = labels[:, 0] if task == "expr" else labels
        return out

    def _read_folder(self, video_id: str, tasks: dict[str, list[str]], n_frames: int) -> dict[str, np.ndarray]:
        if self._txt_files is None:
            found: dict[str, list[Path]] = {}
            for root, _, files in os.walk(self.path):
                for name in files:
                    if name.endswith(".txt"):
                        found.setdefault(name[:-4], []).append(Path(root) / name)
            self._txt_files = found
        out = {}
        for path in self._txt_files.get(video_id, []):
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            if not lines:
                continue
            header = [h.strip() for h in lines[0].split(",")]
            task = ("va" if [h.casefold() for h in header] == ["valence", "arousal"]
                    else "au" if all(h.upper().startswith("AU") for h in header) else "expr")
            if task not in tasks:
                continue
            invalid = -5.0 if task == "va" else -1.0
            width = 2 if task == "va" else 1 if task == "expr" else len(header)
            labels = np.full((n_frames, width), invalid)
            for frame, line in enumerate(lines[1:n_frames + 1]):
                cells = [c for c in line.replace(" ", "").split(",") if c != ""]
                if len(cells) >= width:
                    labels[frame] = [_number(c) for c in cells[:width]]
            out[task] = labels[:, 0] if task == "expr" else labels
        return out


def _label_value(task: str, text: str, columns: list[str]) -> float:
    """One CSV cell as a label: a number, or for EXPR a class name (matched to the run's class names by name or by
    its first three letters: ``happy`` is ``Happiness``); empty or unknown is the invalid code."""
    invalid = -5.0 if task == "va" else -1.0
    if text == "":
        return invalid
    value = _number(text)
    if np.isfinite(value):
        return value
    if task != "expr":
        return invalid
    folded = text.casefold()
    for k, name in enumerate(columns):
        if name.casefold() == folded:
            return float(k)
    for k, name in enumerate(columns):
        if name.casefold()[:3] == folded[:3]:
            return float(k)
    return invalid
