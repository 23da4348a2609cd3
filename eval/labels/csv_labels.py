"""Generic label CSVs (see :mod:`eval.labels`): one row per frame or per clip, tasks by column name."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from eval.labels.label_set import SPLITS, TASK_SPECS, LabelError, LabelSet, checked, select_tasks
from eval.tasks import AU_INVALID, EXPR_CLASSES_ABAW3, EXPR_INVALID, VA_INVALID, Protocol, TaskSpec

EXPR_ALIASES = {"angry": "Anger", "happy": "Happiness", "sad": "Sadness", "surprised": "Surprise",
                "fearful": "Fear", "disgusted": "Disgust"}
"""Expression names accepted in a CSV besides the ABAW3 class names (all matched case-insensitively)."""

_EXPR_NAMES = {name.casefold(): index for index, name in enumerate(EXPR_CLASSES_ABAW3)} | {
    alias: EXPR_CLASSES_ABAW3.index(name) for alias, name in EXPR_ALIASES.items()}
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}



def load_csv(path: Path, tasks: Sequence[str] | None, column_map: dict[str, str], protocol: Protocol = "abaw2022",
             strict: bool = False) -> LabelSet:
    """A generic label CSV (see :mod:`eval.labels`), its tasks scored under ``protocol``; out-of-range values masked
    and counted (an unknown expression name too), or with ``strict`` a LabelError."""
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = [name.strip() for name in next(reader, [])]
        columns = _csv_columns(path, header, column_map)
        if "video" not in columns and "file" not in columns:
            raise LabelError(f"{path}: no video or file column (columns: {', '.join(header)})")
        task_columns = _csv_task_columns(path, columns)
        selected = select_tasks(list(task_columns), tasks, path)
        specs = {task: (TaskSpec("au", tuple(task_columns["au"]), protocol) if task == "au"
                        else TASK_SPECS[task](protocol)) for task in selected}
        # video id -> list of (line, frame or None, task -> row values)
        rows: dict[str, list[tuple[int, int | None, dict[str, list]]]] = {}
        video_split: dict[str, str] = {}
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            line = reader.line_num
            if len(record) < len(header):
                raise LabelError(f"{path}: line {line} has {len(record)} fields, the header {len(header)}")
            cells = {name: record[index].strip() for name, index in columns.items()}
            video = cells["video"] if "video" in cells else Path(cells["file"]).stem
            if not video:
                raise LabelError(f"{path}: line {line} has no video id")
            frame = _csv_frame(path, line, cells["frame"]) if "frame" in cells else None
            if "split" in cells:
                _record_split(path, line, video, cells["split"], video_split)
            values = {task: [_parse_cell(specs[task], cells[name], path, line, name, strict)
                             for name in task_columns[task]] for task in selected}
            rows.setdefault(video, []).append((line, frame, values))
    label_set = LabelSet(tasks=specs, labels={}, splits={task: dict(video_split) for task in specs},
                         source=str(path), layout_name="csv")
    out_of_range = None if strict else label_set.out_of_range
    for video, video_rows in rows.items():
        if "frame" in columns:
            label_set.labels[video] = _per_frame_arrays(path, video, video_rows, specs, out_of_range)
        else:
            if len(video_rows) > 1:
                raise LabelError(f"{path}: video {video} is on lines {video_rows[0][0]} and {video_rows[1][0]}; a "
                                 "CSV without a frame column holds one row per video")
            line, _, values = video_rows[0]
            label_set.labels[video] = {task: checked(path, spec, [values[task]], _csv_where([line], spec),
                                                     out_of_range)
                                       for task, spec in specs.items()}
            label_set.per_clip.add(video)
    return label_set


def _csv_columns(path: Path, header: list[str], column_map: Mapping[str, str]) -> dict[str, int]:
    """Canonical column name (``video``, ``frame``, ``valence``, ``expr``, ``AU12``, ...) -> index in the CSV rows."""
    if not header:
        raise LabelError(f"{path}: empty file (expected a header line)")
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        if _canonical(name) in columns:
            raise LabelError(f"{path}: column {name} appears twice in the header")
        columns[_canonical(name)] = index
    for wanted, source in column_map.items():
        if source not in header:
            raise LabelError(f"{path}: column_map maps {wanted} to {source}, which is not a column "
                             f"(columns: {', '.join(header)})")
        columns[_canonical(wanted)] = header.index(source)
    return columns


def _canonical(name: str) -> str:
    """A CSV column name as the loader knows it: case-folded, AU columns as ``AU<n>`` (``au_01`` -> ``AU1``)."""
    au = re.fullmatch(r"au[\s_]*0*(\d+)", name.strip(), re.IGNORECASE)
    return f"AU{au.group(1)}" if au else name.strip().casefold()


def _csv_task_columns(path: Path, columns: Mapping[str, int]) -> dict[str, list[str]]:
    """Task -> its canonical columns in the CSV; AU columns in the order they appear."""
    found: dict[str, list[str]] = {}
    if "valence" in columns or "arousal" in columns:
        if not ("valence" in columns and "arousal" in columns):
            raise LabelError(f"{path}: va labels need both valence and arousal columns")
        found["va"] = ["valence", "arousal"]
    if "expr" in columns:
        found["expr"] = ["expr"]
    aus = sorted((name for name in columns if re.fullmatch(r"AU\d+", name)), key=columns.__getitem__)
    if aus:
        found["au"] = aus
    if not found:
        raise LabelError(f"{path}: no label columns; expected valence and arousal, expr, or AU<n> columns "
                         "(column_map names them when the CSV calls them otherwise)")
    return found


def _csv_frame(path: Path, line: int, text: str) -> int:
    try:
        frame = int(text)
    except ValueError:
        frame = -1
    if frame < 0:
        raise LabelError(f"{path}: line {line}: frame {text!r} is not a frame index (an integer >= 0)")
    return frame


def _record_split(path: Path, line: int, video: str, text: str, video_split: dict[str, str]) -> None:
    split = _SPLIT_NAMES.get(text.casefold())
    if split is None:
        raise LabelError(f"{path}: line {line}: split {text!r} is not one of {', '.join(SPLITS)}")
    if video_split.setdefault(video, split) != split:
        raise LabelError(f"{path}: line {line}: video {video} is in split {split} here, {video_split[video]} above")


def _parse_cell(spec: TaskSpec, text: str, path: Path, line: int, column: str, strict: bool) -> float | int:
    """One CSV cell as a number in the task's coding; an empty cell is the invalid code; an unknown expression name
    is NaN (masked and counted later) unless ``strict``."""
    if not text:
        return {"va": VA_INVALID, "expr": EXPR_INVALID, "au": AU_INVALID}[spec.name]
    try:
        return float(text) if spec.name != "expr" else int(text)
    except ValueError:
        if spec.name == "expr" and text.casefold() in _EXPR_NAMES:
            return _EXPR_NAMES[text.casefold()]
        if spec.name == "expr" and not strict:
            return float("nan")
    known = (f"; known names: {', '.join(sorted(_EXPR_NAMES))}" if spec.name == "expr" else "")
    raise LabelError(f"{path}: line {line}: {column} value {text!r} is not "
                     f"{'a class index or expression name' if spec.name == 'expr' else 'a number'}{known}")


def _csv_where(lines: Sequence[int], spec: TaskSpec) -> Callable[[int, np.ndarray], str]:
    """Where a bad CSV row is: its line and the values it holds."""
    return lambda bad, value: f"line {lines[bad]}: {spec.name} value(s) {value.tolist()}"


def _per_frame_arrays(path: Path, video: str, rows: list[tuple[int, int | None, dict[str, list]]],
                      specs: Mapping[str, TaskSpec],
                      out_of_range: dict[str, dict[str, int]] | None) -> dict[str, np.ndarray]:
    """A per-frame CSV's rows of one video as arrays of max frame + 1 rows; frames without a row are invalid."""
    first_line: dict[int, int] = {}
    for line, frame, _ in rows:
        if first_line.setdefault(frame, line) != line:
            raise LabelError(f"{path}: line {line}: video {video} frame {frame} is already on line "
                             f"{first_line[frame]}")
    frames = np.array([frame for _, frame, _ in rows])
    lines = [line for line, _, _ in rows]
    arrays = {}
    for task, spec in specs.items():
        array = spec.empty(int(frames.max()) + 1)
        array[frames] = checked(path, spec, [values[task] for _, _, values in rows], _csv_where(lines, spec),
                                out_of_range)
        arrays[task] = array
    return arrays
