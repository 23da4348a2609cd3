"""Labels for the trainer: Aff-Wild2 annotation folders or a generic CSV, in the organisers' coding (see train.tasks).

``LABELS=DIR`` names a folder holding Aff-Wild2 challenge folders; the tasks loaded are those whose folders are present
(``tasks`` / ``TASKS=va,expr,au`` restricts them). Two layouts, told apart by the folder names (one table,
:data:`AFFWILD2_LAYOUTS`, describes both):

- ``abaw3`` (ABAW3 onward, protocol ``abaw2022``: 8 classes, 12 AUs): ``VA_Estimation_Challenge``,
  ``EXPR_Classification_Challenge``, ``AU_Detection_Challenge``, each with ``Train_Set/`` and ``Validation_Set/``.
- ``abaw2020`` (protocol ``abaw2020``: 7 classes, 8 AUs): ``VA_Set``, ``EXPR_Set``, ``AU_Set``, each with
  ``Train_Set/`` (or ``Training_Set/``) and ``Validation_Set/``.

Each ``<challenge>/<split>/<video>.txt`` starts with a header naming the task's columns (``valence,arousal``; the
expression class names; the AU names), then holds one line per frame: line k after the header is frame k. EXPR lines
hold one class index. Invalid frames are coded -5 (VA) and -1 (EXPR, AU rows). The file stem is the store's video id,
so ``<video>_left.txt`` / ``<video>_right.txt`` label the groups ``<video>_left`` / ``<video>_right``.

A generic CSV (``LABELS=file.csv``) has a ``video`` column (or ``file``, whose stem is the video id), an optional
``frame`` column (present: one row per frame; absent: one row per clip, broadcast over all its frames) and an optional
``split`` column (``train``/``val``). Task columns: ``valence`` and ``arousal`` (va), ``expr`` (a class index or
name, e.g. ``happy``), ``AU<n>`` (au, in CSV order); ``column_map`` names the CSV column holding a task column when
the names differ (``{"expr": "intended_emotion"}``). Empty cells and frames a per-frame CSV skips are invalid.

Labels align with features by frame index; :func:`fit_to_frames` resolves length mismatches by an explicit, logged
rule: trim from the end, or pad by repeating the last row.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train.tasks import (AU_INVALID, EXPR_CLASSES_ABAW3, EXPR_INVALID, TASK_ORDER, VA_INVALID, Protocol, TaskSpec,
                         au_task, expr_task, va_task)

LOG = logging.getLogger("affectsync.train")

SPLITS = ("train", "val")
_TASK_SPECS = {"va": va_task, "expr": expr_task, "au": au_task}


class LabelError(ValueError):
    """Labels that cannot be read or used; the message names the file and the cause on one line."""


@dataclass(frozen=True)
class AffWild2Layout:
    """One Aff-Wild2 folder layout: the challenge folder of each task and the split folders inside it."""

    name: str
    protocol: Protocol
    task_folders: Mapping[str, str]   # task -> challenge folder
    split_folders: Mapping[str, str]  # split folder -> "train" | "val"

    def spec(self, task: str) -> TaskSpec:
        return _TASK_SPECS[task](self.protocol)


AFFWILD2_LAYOUTS = (
    AffWild2Layout("abaw3", "abaw2022",
                   {"va": "VA_Estimation_Challenge", "expr": "EXPR_Classification_Challenge",
                    "au": "AU_Detection_Challenge"},
                   {"Train_Set": "train", "Validation_Set": "val"}),
    AffWild2Layout("abaw2020", "abaw2020", {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"},
                   {"Train_Set": "train", "Training_Set": "train", "Validation_Set": "val"}),
)

EXPR_ALIASES = {"angry": "Anger", "happy": "Happiness", "sad": "Sadness", "surprised": "Surprise",
                "fearful": "Fear", "disgusted": "Disgust"}
"""Expression names accepted in a CSV besides the ABAW3 class names (all matched case-insensitively)."""

_EXPR_NAMES = {name.casefold(): index for index, name in enumerate(EXPR_CLASSES_ABAW3)} | {
    alias: EXPR_CLASSES_ABAW3.index(name) for alias, name in EXPR_ALIASES.items()}
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}


@dataclass
class LabelSet:
    """Labels of every video, per task, in the organisers' coding (see train.tasks), and the split of each video."""

    tasks: dict[str, TaskSpec]                # task name -> spec, in TASK_ORDER order
    labels: dict[str, dict[str, np.ndarray]]  # video id -> task -> (N, ...) labels; N = 1 for per-clip videos
    splits: dict[str, dict[str, str]]         # task -> video id -> "train" | "val"; empty when the source has none
    per_clip: set[str] = field(default_factory=set)  # video ids whose single row is broadcast over all frames
    source: str = ""                          # the path loaded
    layout_name: str = "csv"                  # "abaw3", "abaw2020" or "csv"

    def video_ids(self) -> list[str]:
        """Sorted ids of the videos with any label."""
        return sorted(self.labels)

    def layout(self) -> str:
        """Where the labels came from: ``abaw3``, ``abaw2020`` (Aff-Wild2 folders) or ``csv``."""
        return self.layout_name


def load_labels(path: str | Path, tasks: Sequence[str] | str | None = None,
                column_map: Mapping[str, str] | None = None) -> LabelSet:
    """Labels from an Aff-Wild2 folder (holding the challenge folders) or a generic CSV file (see the module docstring).

    ``tasks`` (``["va", "expr"]`` or ``"va,expr"``; None or empty: every task the labels have) restricts the tasks;
    ``column_map`` (task column -> CSV column) applies to CSV files only. Arrays have one row per frame (frame k is row
    k), or one row for the videos in ``per_clip``. Raises LabelError naming the file and the cause.
    """
    path = Path(path)
    if isinstance(tasks, str):
        tasks = tasks.split(",")
    tasks = [task.strip().lower() for task in tasks or () if task.strip()] or None
    if path.is_dir():
        if column_map:
            raise LabelError(f"{path}: column_map applies to CSV labels only, not to Aff-Wild2 folders")
        return _load_affwild2(path, tasks)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _load_csv(path, tasks, dict(column_map or {}))
    raise LabelError(f"{path}: not a folder of Aff-Wild2 challenge folders nor a .csv file"
                     + ("" if path.exists() else " (it does not exist)"))


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


def _select_tasks(available: Sequence[str], requested: Sequence[str] | None, source: Path) -> list[str]:
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


def _first_bad_row(spec: TaskSpec, values: np.ndarray) -> int | None:
    """Index of the first row outside the task's coding (VA in [-1, 1] or -5, EXPR a class index or -1, AU 0/1/-1)."""
    if spec.name == "va":
        bad = ~((np.abs(values) <= 1.0) | (values == VA_INVALID)).all(axis=1)
    elif spec.name == "expr":
        bad = (values != np.round(values)) | (values < EXPR_INVALID) | (values >= spec.n_outputs)
    else:
        bad = ~np.isin(values, (0.0, 1.0, AU_INVALID)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def _coded(spec: TaskSpec, values: np.ndarray) -> np.ndarray:
    """Checked float values as the task's array: va (N, 2) float32, expr (N,) int64, au (N, K) float32."""
    return values.astype(np.int64) if spec.name == "expr" else values.astype(np.float32)


def _describe_coding(spec: TaskSpec) -> str:
    if spec.name == "va":
        return f"values in [-1, 1] or {VA_INVALID:g} (invalid)"
    if spec.name == "expr":
        return f"a class index 0..{spec.n_outputs - 1} or {EXPR_INVALID} (invalid)"
    return f"0, 1 or {AU_INVALID:g} (invalid)"


# --- Aff-Wild2 folders ---------------------------------------------------------------------------------------------

def _load_affwild2(root: Path, tasks: Sequence[str] | None) -> LabelSet:
    found = [(layout, [task for task in TASK_ORDER if (root / layout.task_folders[task]).is_dir()])
             for layout in AFFWILD2_LAYOUTS]
    found = [(layout, available) for layout, available in found if available]
    if len(found) != 1:
        expected = "; or ".join(f"{layout.name}: {', '.join(layout.task_folders.values())}"
                                for layout in AFFWILD2_LAYOUTS)
        if found:
            raise LabelError(f"{root}: holds challenge folders of both Aff-Wild2 layouts ({expected}); "
                             "point the labels at a folder with one layout")
        hint = " (this looks like one challenge folder: give its parent)" if any(
            (root / split).is_dir() for layout in AFFWILD2_LAYOUTS for split in layout.split_folders) else ""
        raise LabelError(f"{root}: no Aff-Wild2 challenge folders; expected {expected}{hint}")
    layout, available = found[0]
    label_set = LabelSet(tasks={}, labels={}, splits={}, source=str(root), layout_name=layout.name)
    for task in _select_tasks(available, tasks, root):
        spec = label_set.tasks[task] = layout.spec(task)
        task_splits = label_set.splits[task] = {}
        folder = root / layout.task_folders[task]
        for name, split in layout.split_folders.items():
            for file in sorted((folder / name).glob("*.txt")):
                if file.stem in task_splits:
                    raise LabelError(f"{file}: video {file.stem} is also labelled in the {task_splits[file.stem]} "
                                     f"split of {folder.name}")
                label_set.labels.setdefault(file.stem, {})[task] = _read_annotation(file, spec)
                task_splits[file.stem] = split
        if not task_splits:
            raise LabelError(f"{folder}: no <video>.txt annotation files in "
                             f"{' or '.join(name + '/' for name in layout.split_folders)}")
    return label_set


def _read_annotation(path: Path, spec: TaskSpec) -> np.ndarray:
    """One Aff-Wild2 annotation file: header line, then line k + 2 holds frame k's label."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = [name.strip() for name in lines[0].split(",")] if lines else []
    if [name.casefold() for name in header] != [name.casefold() for name in spec.columns]:
        raise LabelError(f"{path}: header {','.join(header) or '(empty file)'} differs from the expected "
                         f"{spec.name} columns {','.join(spec.columns)} (protocol {spec.protocol})")
    rows = lines[1:]
    while rows and not rows[-1].strip():
        rows.pop()
    width = 1 if spec.name == "expr" else spec.n_outputs
    for index, row in enumerate(rows):
        if row.count(",") != width - 1 or not row.strip():
            raise LabelError(f"{path}: line {index + 2} (frame {index}) holds {row.strip() or 'nothing'}, "
                             f"expected {width} comma-separated value(s)")
    try:
        values = np.loadtxt(rows, delimiter=",", comments=None, ndmin=2, dtype=np.float64) if rows \
            else np.empty((0, width))
    except ValueError:
        index = next(index for index, row in enumerate(rows) if not _all_numbers(row))
        raise LabelError(f"{path}: line {index + 2} (frame {index}) holds {rows[index].strip()}, "
                         "which are not all numbers") from None
    return _checked(path, spec, values, lambda bad, _: f"line {bad + 2} (frame {bad}) holds {rows[bad].strip()}")


def _all_numbers(row: str) -> bool:
    try:
        [float(value) for value in row.split(",")]
    except ValueError:
        return False
    return True


# --- generic CSV ---------------------------------------------------------------------------------------------------

def _load_csv(path: Path, tasks: Sequence[str] | None, column_map: dict[str, str]) -> LabelSet:
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = [name.strip() for name in next(reader, [])]
        columns = _csv_columns(path, header, column_map)
        if "video" not in columns and "file" not in columns:
            raise LabelError(f"{path}: no video or file column (columns: {', '.join(header)})")
        task_columns = _csv_task_columns(path, columns)
        selected = _select_tasks(list(task_columns), tasks, path)
        specs = {task: (TaskSpec("au", tuple(task_columns["au"]), "abaw2022") if task == "au"
                        else _TASK_SPECS[task]("abaw2022")) for task in selected}
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
            values = {task: [_parse_cell(specs[task], cells[name], path, line, name)
                             for name in task_columns[task]] for task in selected}
            rows.setdefault(video, []).append((line, frame, values))
    label_set = LabelSet(tasks=specs, labels={}, splits={task: dict(video_split) for task in specs},
                         source=str(path), layout_name="csv")
    for video, video_rows in rows.items():
        if "frame" in columns:
            label_set.labels[video] = _per_frame_arrays(path, video, video_rows, specs)
        else:
            if len(video_rows) > 1:
                raise LabelError(f"{path}: video {video} is on lines {video_rows[0][0]} and {video_rows[1][0]}; a "
                                 "CSV without a frame column holds one row per video")
            line, _, values = video_rows[0]
            label_set.labels[video] = {task: _checked(path, spec, [values[task]], _csv_where([line], spec))
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


def _parse_cell(spec: TaskSpec, text: str, path: Path, line: int, column: str) -> float | int:
    """One CSV cell as a number in the task's coding; an empty cell is the invalid code."""
    if not text:
        return {"va": VA_INVALID, "expr": EXPR_INVALID, "au": AU_INVALID}[spec.name]
    try:
        return float(text) if spec.name != "expr" else int(text)
    except ValueError:
        if spec.name == "expr" and text.casefold() in _EXPR_NAMES:
            return _EXPR_NAMES[text.casefold()]
    known = (f"; known names: {', '.join(sorted(_EXPR_NAMES))}" if spec.name == "expr" else "")
    raise LabelError(f"{path}: line {line}: {column} value {text!r} is not "
                     f"{'a class index or expression name' if spec.name == 'expr' else 'a number'}{known}")


def _csv_where(lines: Sequence[int], spec: TaskSpec) -> Callable[[int, np.ndarray], str]:
    """Where a bad CSV row is: its line and the values it holds."""
    return lambda bad, value: f"line {lines[bad]}: {spec.name} value(s) {value.tolist()}"


def _checked(path: Path, spec: TaskSpec, rows, where: Callable[[int, np.ndarray], str]) -> np.ndarray:
    """Rows of one task's values checked against its coding and turned into its array; ``where(row, values)`` says
    where a bad row is in the file, for the error."""
    values = np.asarray(rows, np.float64).reshape(len(rows), -1)
    if spec.name == "expr":
        values = values[:, 0]
    bad = _first_bad_row(spec, values)
    if bad is not None:
        raise LabelError(f"{path}: {where(bad, values[bad])}, expected {_describe_coding(spec)}")
    return _coded(spec, values)


def _per_frame_arrays(path: Path, video: str, rows: list[tuple[int, int | None, dict[str, list]]],
                      specs: Mapping[str, TaskSpec]) -> dict[str, np.ndarray]:
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
        array[frames] = _checked(path, spec, [values[task] for _, _, values in rows], _csv_where(lines, spec))
        arrays[task] = array
    return arrays

