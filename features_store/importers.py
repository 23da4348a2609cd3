"""Per-frame outputs of other face toolkits (OpenFace 2.2, py-feat) placed on the frames of videos already in a store.

A CSV belongs to the video whose id is its file name without the suffix (OpenFace names its output after the video),
or to the one video given. Its numeric feature columns become one feature, ``openface`` or ``pyfeat`` (T, D) float32
with the CSV's column names in ``columns``, plus ``openface_valid`` / ``pyfeat_valid`` (T,) bool; frames without a
row are zeros and False, as every other feature of the store.

Placing rows on frames:

- OpenFace (``FeatureExtraction`` / ``FaceLandmarkVidMulti``; headers and values separated by ``", "``): by
  ``timestamp``, seconds from the video's first frame (OpenFace counts from 0), compared with ``frame_time -
  frame_time[0]``: a row goes to the nearest frame when it lies within half the video's median frame interval of it,
  else it is unmatched (reported: count and time range). Rows with ``success`` 0 (no face tracked) count as no row.
- py-feat (a ``Fex`` saved with ``to_csv``): by ``frame``, the 0-based index of the decoded frame (py-feat decodes
  every frame in order, so its frame k is the store's frame k whatever the frame rate, variable or not; indices
  outside 0..T-1 are unmatched). py-feat writes ``approx_time`` as ``MM:SS`` text (whole seconds: too coarse to place
  a frame), so it is used only when every value is a number, read as seconds and matched like OpenFace's timestamps.
  Rows without a face (``FaceScore`` empty: py-feat blanks every prediction of such a row) count as no row.

When several rows land on one frame (several faces, or rows closer together than a frame), the row with the highest
``confidence`` (OpenFace) / ``FaceScore`` (py-feat) is kept, the first of equals; the others are counted. Bookkeeping
columns are not features: OpenFace's ``frame, face_id, timestamp, confidence, success``, py-feat's ``frame, input,
approx_time, Identity`` (a person label), ``FrameHeight, FrameWidth`` and a pandas index column; every other column
must hold numbers. An empty or NaN cell of a kept row is stored as 0 (a store holds no NaN; py-feat leaves e.g. its
gaze columns empty when run without a gaze model) and counted per column.

Provenance (the recipe: tool, its version when known, the matching rule) is the same for every video imported the same
way, so models train across them; what differs per video (the CSV's name, size and sha256, rows, unmatched rows and
their range, the tolerance in seconds, NaN cells) is the array attribute ``imported_from``. Headers, videos and
existing features of every CSV are checked before anything is written; an existing feature is replaced only with
``overwrite``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features_store.common import file_sha256, library_versions, now_utc
from features_store.interop import InteropError
from features_store.schema import ArraySchema
from features_store.store import FeatureStore, VideoGroup

IMPORTER_VERSION = "1"
TOLERANCE_FRAMES = 0.5
"""A timed row matches its nearest frame within this fraction of the video's median frame interval."""
PARSE_BLOCK_ROWS = 2048
"""CSV rows converted to numbers at a time."""
_NAN_TEXTS = frozenset({"", "nan", "-nan", "nan(ind)", "-nan(ind)", "na", "n/a", "null", "none"})


@dataclass(frozen=True)
class CsvLayout:
    """One toolkit's CSV: the feature it becomes, its bookkeeping columns, how rows are placed and ranked."""

    tool: str
    feature: str
    bookkeeping: tuple[str, ...]
    """Columns that are not features."""
    text: tuple[str, ...]
    """Bookkeeping columns that hold text (never read as numbers)."""
    required: tuple[str, ...]
    confidence: str
    """Ranks several rows of one frame (highest kept)."""
    description: str


OPENFACE = CsvLayout(
    tool="OpenFace", feature="openface", bookkeeping=("frame", "face_id", "timestamp", "confidence", "success"),
    text=(), required=("timestamp", "confidence", "success"), confidence="confidence",
    description="OpenFace 2 per-frame outputs (gaze, eye landmarks, head pose, 2D/3D landmarks, shape parameters, "
                "AU intensities _r and presences _c), imported from its CSV")
PYFEAT = CsvLayout(
    tool="py-feat", feature="pyfeat", bookkeeping=("frame", "input", "approx_time", "Identity", "FrameHeight",
                                                   "FrameWidth", "", "Unnamed: 0"),
    text=("input", "approx_time", "Identity", "", "Unnamed: 0"), required=("frame", "FaceScore"),
    confidence="FaceScore",
    description="py-feat Fex per-frame outputs (face box and score, 68 landmarks, head pose, AUs, emotions, ...), "
                "imported from its CSV")
LAYOUTS = {"openface": OPENFACE, "pyfeat": PYFEAT}


@dataclass
class ImportReport:
    """What one CSV import did to one video."""

    csv: str
    video_id: str
    feature: str
    n_frames: int
    n_rows: int
    n_valid_frames: int
    n_without_face: int
    """Placed rows that hold no face (OpenFace ``success`` 0, py-feat ``FaceScore`` empty)."""
    n_superseded: int
    """Placed rows dropped because another row of the same frame had a higher confidence."""
    n_unmatched: int
    unmatched_range: tuple[float, float] | None
    placed_by: str
    unit: str
    """Of ``unmatched_range``: ``s`` (times from the first frame) or ``frame`` (indices)."""
    tolerance_s: float | None
    nan_cells_zeroed: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for people."""
        parts = [f"{self.feature} on {self.video_id}: {self.n_valid_frames} of {self.n_frames} frames from "
                 f"{self.n_rows} rows of {Path(self.csv).name}"]
        if self.n_without_face:
            parts.append(f"{self.n_without_face} rows without a face")
        if self.n_superseded:
            parts.append(f"{self.n_superseded} rows on an already-taken frame (highest confidence kept)")
        if self.n_unmatched:
            if self.unmatched_range is None:
                where = "no time given"
            else:
                low, high = self.unmatched_range
                where = (f"{low:.3f}..{high:.3f} s, no frame within half a frame" if self.unit == "s"
                         else f"frames {low:.0f}..{high:.0f}, outside the video's 0..{self.n_frames - 1}")
            parts.append(f"{self.n_unmatched} rows unmatched ({where})")
        if self.nan_cells_zeroed:
            parts.append(f"{sum(self.nan_cells_zeroed.values())} empty cells stored as 0 in "
                         f"{len(self.nan_cells_zeroed)} columns")
        return "; ".join(parts)


@dataclass
class ParsedCsv:
    """A toolkit CSV as numbers: feature columns (NaN where empty) and the bookkeeping columns placing uses."""

    path: Path
    columns: list[str]
    values: np.ndarray  # (n_rows, D) float32, NaN where empty
    numbers: dict[str, np.ndarray]  # numeric bookkeeping (and confidence) columns, float64
    texts: dict[str, list[str]]  # text bookkeeping columns used for placing (approx_time)


def import_openface(csvs: Sequence[str | Path], into: str, video_id: str | None = None, overwrite: bool = False,
                    tool_version: str | None = None) -> list[ImportReport]:
    """OpenFace 2.x CSVs (``FeatureExtraction``'s output) as feature ``openface`` of existing videos of store
    ``into``; see the module docstring. Returns one report per CSV."""
    return import_csvs(OPENFACE, csvs, into, video_id, overwrite, tool_version)


def import_pyfeat(csvs: Sequence[str | Path], into: str, video_id: str | None = None, overwrite: bool = False,
                  tool_version: str | None = None) -> list[ImportReport]:
    """py-feat ``Fex`` CSVs (``detect(..., data_type="video")`` saved with ``to_csv``) as feature ``pyfeat`` of
    existing videos of store ``into``; see the module docstring. Returns one report per CSV."""
    return import_csvs(PYFEAT, csvs, into, video_id, overwrite, tool_version)


def import_csvs(layout: CsvLayout, csvs: Sequence[str | Path], into: str, video_id: str | None = None,
                overwrite: bool = False, tool_version: str | None = None) -> list[ImportReport]:
    """Import ``csvs`` in ``layout`` into store ``into``: every header, video and feature name is checked first;
    then each CSV is read, placed and written (its video claimed while written), and the metadata consolidated."""
    paths = [Path(path) for path in csvs]
    if not paths:
        raise InteropError(f"import-{layout.feature}: no CSV given")
    if video_id is not None and len(paths) > 1:
        raise InteropError(f"--video {video_id} names the video of one CSV; {len(paths)} were given (name each CSV "
                           "after its video instead)")
    FeatureStore(into)  # an existing store: a missing one raises here, rather than being created empty
    store = FeatureStore(into, mode="a")
    targets = {path: video_id or path.stem for path in paths}
    taken = [video for video in targets.values() if list(targets.values()).count(video) > 1]
    if taken:
        raise InteropError(f"several CSVs for video {taken[0]!r}: "
                           f"{', '.join(str(p) for p, v in targets.items() if v == taken[0])}")
    complete = store.complete_n_frames()
    for path, target in targets.items():
        header = read_header(path, layout)
        _check_columns(path, layout, header)
        if target not in store:
            hint = "" if video_id else " (a CSV belongs to the video named by its file name; or give --video)"
            raise InteropError(f"{path}: no video {target!r} in {into}{hint}")
        if target not in complete:
            raise InteropError(f"{path}: video {target!r} in {into} is not complete (a partial extraction); finish "
                               "or redo its extraction first")
        existing = {layout.feature, f"{layout.feature}_valid"} & set(store.video(target).array_names())
        if existing and not overwrite:
            raise InteropError(f"{path}: video {target!r} already has {', '.join(sorted(existing))}; give --overwrite "
                               "to replace it")
    store.begin_writing(now_utc())
    reports = []
    for path, target in targets.items():
        parsed = parse_csv(path, layout)
        if not store.claims.try_claim(target):
            holder = store.claims.holder(target)
            raise InteropError(f"{path}: video {target!r} is being written by another process "
                               f"({holder.describe() if holder else 'unknown'}); try again when it has finished")
        try:
            reports.append(_write(store.video(target), parsed, layout, tool_version))
        finally:
            store.claims.release(target)
    store.consolidate()
    return reports


def read_header(path: Path, layout: CsvLayout) -> list[str]:
    """The CSV's column names (spaces around them removed: OpenFace writes ``", "``-separated headers)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, skipinitialspace=True), None)
    except FileNotFoundError:
        raise InteropError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InteropError(f"{path}: a folder, not a {layout.tool} CSV") from None
    except UnicodeDecodeError:
        raise InteropError(f"{path}: not a CSV (not UTF-8 text)") from None
    except csv.Error as exc:
        raise InteropError(f"{path}: not a CSV ({exc})") from None
    if not header:
        raise InteropError(f"{path}: empty, no CSV header")
    return [name.strip() for name in header]


def _check_columns(path: Path, layout: CsvLayout, header: list[str]) -> None:
    missing = [name for name in layout.required if name not in header]
    if missing:
        shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        raise InteropError(f"{path}: no {', '.join(repr(m) for m in missing)} column (required in {layout.tool} CSVs; "
                           f"its header: {shown})")
    doubled = sorted({name for name in header if header.count(name) > 1})
    if doubled:
        raise InteropError(f"{path}: columns named twice: {', '.join(doubled)}")
    if not _feature_columns(layout, header):
        raise InteropError(f"{path}: no feature column besides {', '.join(layout.bookkeeping)}")


def _feature_columns(layout: CsvLayout, header: list[str]) -> list[str]:
    return [name for name in header if name not in layout.bookkeeping]


def parse_csv(path: Path, layout: CsvLayout) -> ParsedCsv:
    """Read a whole CSV (a block of rows at a time) into numbers; a malformed row or a non-numeric cell in a
    numeric column raises :class:`InteropError` naming the line and column."""
    header = read_header(path, layout)
    _check_columns(path, layout, header)
    columns = _feature_columns(layout, header)
    feature_index = [header.index(name) for name in columns]
    wanted_numbers = [name for name in ("timestamp", "confidence", "success", "frame", "FaceScore")
                      if name in header and name not in layout.text]
    wanted_texts = [name for name in ("approx_time",) if name in header]
    values: list[np.ndarray] = []
    numbers: dict[str, list[np.ndarray]] = {name: [] for name in wanted_numbers}
    texts: dict[str, list[str]] = {name: [] for name in wanted_texts}
    block: list[list[str]] = []
    first_line = 2

    def flush() -> None:
        if not block:
            return
        values.append(_to_numbers(block, feature_index, columns, path, first_line).astype(np.float32))
        for name in wanted_numbers:
            numbers[name].append(_to_numbers(block, [header.index(name)], [name], path, first_line)[:, 0])
        for name in wanted_texts:
            texts[name].extend(row[header.index(name)].strip() for row in block)

    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            next(reader)
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise InteropError(f"{path}: line {reader.line_num} has {len(row)} fields, the header "
                                       f"{len(header)}")
                if not block:
                    first_line = reader.line_num
                block.append(row)
                if len(block) == PARSE_BLOCK_ROWS:
                    flush()
                    block = []
            flush()
    except UnicodeDecodeError:
        raise InteropError(f"{path}: not a CSV (not UTF-8 text)") from None
    except csv.Error as exc:
        raise InteropError(f"{path}: not a CSV ({exc})") from None
    return ParsedCsv(
        path=path, columns=columns,
        values=np.concatenate(values) if values else np.zeros((0, len(columns)), np.float32),
        numbers={name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in numbers.items()},
        texts=texts)


def _to_numbers(block: list[list[str]], index: list[int], names: list[str], path: Path, first_line: int
                ) -> np.ndarray:
    """Cells ``index`` of ``block``'s rows as float64 (empty and NaN spellings: NaN)."""
    cells = [[row[k] for k in index] for row in block]
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        pass  # an empty cell, a Windows NaN spelling, or text: cell by cell
    out = np.empty((len(cells), len(index)), np.float64)
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            try:
                out[r, c] = float(text)
            except ValueError:
                if text.strip().lower() not in _NAN_TEXTS:
                    raise InteropError(f"{path}: line {first_line + r}, column {names[c]!r}: {text[:40]!r} is not a "
                                       "number") from None
                out[r, c] = math.nan
    return out


def _frame_interval_s(frame_time: np.ndarray, fps: Any) -> float:
    if len(frame_time) > 1:
        return float(np.median(np.diff(frame_time)))
    return 1.0 / float(fps) if fps else 0.0


def place_rows(parsed: ParsedCsv, layout: CsvLayout, frame_time: np.ndarray, fps: Any = None
               ) -> tuple[np.ndarray, str, str, float | None, np.ndarray]:
    """Each row's frame (-1: unmatched), how rows were placed, the unit of their positions, the tolerance in
    seconds (None when placed by index), and each row's position (seconds from the first frame, or index)."""
    n_frames = len(frame_time)
    seconds = None
    placed_by = None
    if layout is OPENFACE:
        seconds, placed_by = parsed.numbers["timestamp"], "timestamp (s from the first frame)"
    elif "approx_time" in parsed.texts and parsed.texts["approx_time"] and all(
            _is_number(text) for text in parsed.texts["approx_time"]):
        seconds = np.array([float(text) for text in parsed.texts["approx_time"]])
        placed_by = "approx_time (s from the first frame)"
    if seconds is not None:
        origin = frame_time - frame_time[0]
        tolerance_s = TOLERANCE_FRAMES * _frame_interval_s(frame_time, fps)
        after = np.searchsorted(origin, seconds)  # the first frame at or after each row (n_frames: none)
        before, after = np.clip(after - 1, 0, n_frames - 1), np.clip(after, 0, n_frames - 1)
        nearest = np.where(np.abs(seconds - origin[before]) <= np.abs(origin[after] - seconds), before, after)
        distance = np.abs(seconds - origin[nearest])
        frames = np.where(np.isfinite(seconds) & (distance <= tolerance_s + 1e-9), nearest, -1)
        return frames.astype(np.int64), placed_by, "s", tolerance_s, seconds
    index = parsed.numbers["frame"]
    whole = np.isfinite(index) & (index == np.round(index))
    if not whole.all():
        line = int(np.argmin(whole))
        raise InteropError(f"{parsed.path}: row {line + 1}: frame {index[line]!r} is not a frame index")
    frames = np.where((index >= 0) & (index < n_frames), index, -1).astype(np.int64)
    return frames, "frame (0-based index of the decoded frame)", "frame", None, index


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _write(video: VideoGroup, parsed: ParsedCsv, layout: CsvLayout, tool_version: str | None) -> ImportReport:
    """Place ``parsed`` on ``video``'s frames and write the feature and its validity (the group uncommitted
    meanwhile, as any writer leaves it)."""
    frame_time = video.read("frame_time")
    n_frames = len(frame_time)
    frames, placed_by, unit, tolerance_s, positions = place_rows(parsed, layout, frame_time, video.attrs.get("fps"))
    if layout is OPENFACE:
        has_face = parsed.numbers["success"] == 1
    else:
        has_face = np.isfinite(parsed.numbers["FaceScore"])
    confidence = np.nan_to_num(parsed.numbers[layout.confidence], nan=-np.inf)
    placed = frames >= 0
    candidates = np.flatnonzero(placed & has_face)
    order = candidates[np.lexsort((candidates, -confidence[candidates], frames[candidates]))]
    first = np.ones(len(order), bool)
    first[1:] = frames[order][1:] != frames[order][:-1]
    kept = order[first]
    data = np.zeros((n_frames, len(parsed.columns)), np.float32)
    rows = parsed.values[kept]
    empty = np.isnan(rows)
    nan_cells = {parsed.columns[c]: int(count) for c, count in enumerate(empty.sum(axis=0)) if count}
    data[frames[kept]] = np.where(empty, np.float32(0), rows)
    valid = np.zeros(n_frames, bool)
    valid[frames[kept]] = True
    unmatched = positions[~placed]
    finite = unmatched[np.isfinite(unmatched)]
    report = ImportReport(
        csv=str(parsed.path), video_id=video.video_id, feature=layout.feature, n_frames=n_frames,
        n_rows=len(frames), n_valid_frames=int(valid.sum()), n_without_face=int((placed & ~has_face).sum()),
        n_superseded=int(len(order) - len(kept)), n_unmatched=int((~placed).sum()),
        unmatched_range=(float(finite.min()), float(finite.max())) if finite.size else None,
        placed_by=placed_by, unit=unit, tolerance_s=tolerance_s, nan_cells_zeroed=nan_cells)
    provenance = {
        "extractor": f"import_{layout.feature}", "feature": layout.feature, "version": IMPORTER_VERSION,
        "parameters": {"tool": layout.tool, "tool_version": tool_version, "placed_by": placed_by,
                       "tolerance_frames": TOLERANCE_FRAMES if unit == "s" else None,
                       "rows_per_frame": f"highest {layout.confidence}",
                       "no_face": "success = 0" if layout is OPENFACE else "FaceScore empty",
                       "empty_cells": "stored as 0"},
        "libraries": library_versions("affectsync", "numpy"), "created_utc": now_utc()}
    imported = {"file": parsed.path.name, "sha256": file_sha256(parsed.path), "size_bytes": parsed.path.stat().st_size,
                **{key: value for key, value in asdict(report).items() if key not in ("csv", "video_id", "feature")}}
    valid_name = f"{layout.feature}_valid"
    video.set_complete(False)
    video.write(valid_name, valid, {"provenance": provenance, "imported_from": imported},
                ArraySchema(kind="validity", description=f"True where a {layout.tool} row with a face was placed on "
                                                         "the frame; other rows of its features are zeros"))
    video.write(layout.feature, data, {"provenance": provenance, "imported_from": imported},
                ArraySchema(kind="feature", columns=tuple(parsed.columns), validity=valid_name,
                            description=layout.description))
    video.set_complete(True)
    return report
