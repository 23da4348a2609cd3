"""What the viewer shows, read lazily from a store: the video list, one video's timelines over a frame range, and one
frame's details. Every answer is plain JSON (the server sends it, ``view --out`` writes it to files).

Reads are bounded by what is drawn, never by the video's length:

- the video list and a video's description read metadata only (``zarr.json`` files, no chunk);
- a frame range ``[start, stop)`` drawn in ``bins`` columns is read whole when it spans at most
  :data:`EXACT_ROWS` rows (a few contiguous chunks) and averaged per column; a longer range is sampled, one row at the
  start of each column (at most ``bins`` single-row reads), so the overview of an hour-long video costs as much as a
  minute of it;
- a frame's details read one row of each array they show.

Arrays on their own clock (``mel64`` at 100 Hz) are placed by their per-frame row index (``mel64_row``) and their
time array (``mel64_time``), never by an assumed rate. Heat strips are sent as base64 bytes (0-255, rows x columns),
so a strip of 2000 columns x 96 rows is 256 kB, not a JSON list of floats.
"""

from __future__ import annotations

import base64
import math
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from features_store.describe import describe_video
from features_store.errors import UsageError
from features_store.reading import direct_folder, read_rows
from features_store.schema import ArraySchema
from features_store.store import FeatureStore, StoreError, VideoGroup

EXACT_ROWS = 8192
"""A range of at most this many rows is read whole and averaged per column; a longer one is sampled."""
EXACT_VALUES = 1 << 22
"""... and of at most this many values (32 MB as float64): a wide feature is sampled sooner."""
MAX_BINS = 4000
"""Columns of a range answer at most (a screen's width)."""
HEAT_ROWS = 96
"""Rows of a heat strip at most: a feature with more columns is shown as means of contiguous column groups."""
HEAT_MAX_ROW_VALUES = 4096
"""Arrays with more values per row than this (face crops, masks) are not offered as heat strips."""
MAX_WORDS = 5000
"""Words sent with one range at most; past that the answer says so and the client asks to zoom in."""
DEFAULT_WINDOW_FRAMES = 1800
"""Frames the page shows at first (a minute at 30 fps; the whole video when shorter)."""
AUDIO_STRIPS = ("mel64", "mel64_fine", "logmel")
"""The audio strip: the first of these a video has (``logmel``: its centre block)."""
NOT_HEAT = ("frame_time",)


class ViewerError(UsageError):
    """A request the viewer cannot answer: an unknown video, feature or frame (the message names it)."""


def rows_at(array: zarr.Array, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Rows ``indices`` (increasing) of a (N, ...) array: single-row reads straight from the chunk files of a local
    store (:func:`~features_store.reading.read_rows`), else one zarr selection (each chunk fetched once)."""
    indices = np.asarray(indices, dtype=np.int64)
    if direct_folder(array) is None:
        return np.asarray(array.get_orthogonal_selection((indices,) + (slice(None),) * (array.ndim - 1)))
    out = np.empty((len(indices), *array.shape[1:]), dtype=array.dtype)
    for k, index in enumerate(indices):
        read_rows(array, int(index), int(index) + 1, out=out[k:k + 1])
    return out


def _edges(start: int, stop: int, bins: int) -> np.ndarray:
    """Column edges (row indices, increasing, first ``start``, last ``stop``) of ``stop - start`` rows in at most
    ``bins`` columns: one row per column when they fit."""
    count = stop - start
    if count <= bins:
        return np.arange(start, stop + 1, dtype=np.int64)
    return np.unique(np.linspace(start, stop, bins + 1).round().astype(np.int64))


def _binned(array: zarr.Array, edges: np.ndarray, exact: bool, valid: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """(columns, ...) float64 values of ``array`` between ``edges`` and the fraction of valid rows in each column:
    the mean of the column's valid rows when ``exact`` (``valid``: their flags, or None: all valid), else the
    column's first row (with ``valid`` as the flags at those rows). Columns without a valid row are NaN."""
    start, stop = int(edges[0]), int(edges[-1])
    if exact:
        rows = read_rows(array, start, stop).astype(np.float64)
        flags = np.ones(len(rows), bool) if valid is None else valid.astype(bool)
        flat = rows.reshape(len(rows), -1)
        flat = np.where(flags[:, None], flat, 0.0)
        starts = edges[:-1] - start
        sums = np.add.reduceat(flat, starts, axis=0)
        counts = np.add.reduceat(flags.astype(np.float64), starts)
        sizes = np.diff(edges).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts[:, None]
        means[counts == 0] = np.nan
        return means.reshape(len(starts), *array.shape[1:]), counts / sizes
    rows = rows_at(array, edges[:-1]).astype(np.float64)
    flags = np.ones(len(rows), bool) if valid is None else valid.astype(bool)
    rows[~flags] = np.nan
    return rows, flags.astype(np.float64)


def _last_step(times: zarr.Array, fallback_s: float) -> float:
    """The interval (s) between the last two rows of a time array (``fallback_s`` when it has one row): the
    duration given to its last row."""
    if times.shape[0] < 2:
        return fallback_s
    last = rows_at(times, [times.shape[0] - 2, times.shape[0] - 1])
    return float(last[1] - last[0])


def _finite_list(values: np.ndarray, digits: int = 4) -> list:
    """``values`` as nested lists, NaN as None (JSON null), rounded to ``digits``."""
    rounded = np.round(values.astype(np.float64), digits)
    return np.where(np.isnan(rounded), None, rounded).tolist()


def _heat_bytes(values: np.ndarray, units: str | None) -> tuple[str, list[float]]:
    """(columns, rows) float values (NaN: no data) as base64 bytes of rows x columns, 0-255, and the value range
    the bytes span. Probabilities span [0, 1]; decibels the top 80 dB of the strip; anything else is scaled per row
    (mean +- 3 standard deviations over the strip), because feature columns differ in scale."""
    finite = np.isfinite(values)
    units = (units or "").lower()
    if "probab" in units:
        low, high = 0.0, 1.0
        scaled = (values - low) / (high - low)
    elif "db" in units.split(",")[0].split():
        high = float(np.nanmax(values)) if finite.any() else 0.0
        low = high - 80.0
        scaled = (values - low) / 80.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row without data has no mean: NaN, then 0
            mean = np.nan_to_num(np.nanmean(np.where(finite, values, np.nan), axis=0))
            std = np.nan_to_num(np.nanstd(np.where(finite, values, np.nan), axis=0))
        std[std == 0] = 1.0
        scaled = ((values - mean) / std + 3.0) / 6.0
        low, high = -3.0, 3.0
    data = np.where(finite, np.clip(scaled, 0.0, 1.0) * 254 + 1, 0).round().astype(np.uint8)  # 0: no data
    return base64.b64encode(np.ascontiguousarray(data.T).tobytes()).decode("ascii"), [low, high]


def _column_groups(n_columns: int, wanted: Sequence[int] | None = None) -> list[np.ndarray]:
    """The columns of each heat-strip row: every column (of ``wanted``, default all) when at most
    :data:`HEAT_ROWS`, else that many contiguous groups."""
    columns = np.arange(n_columns) if wanted is None else np.asarray(wanted)
    if len(columns) <= HEAT_ROWS:
        return [columns[k:k + 1] for k in range(len(columns))]
    return [group for group in np.array_split(columns, HEAT_ROWS) if len(group)]


class ViewerData:
    """The store (and optionally a training run's predictions and a folder of source videos) as the viewer's JSON.

    ``media_dirs``: folders searched (recursively) for each video's source file by its ``source_name``, which must
    also have the stored size; ``run``: a :class:`~features_store.viewer.runs.RunPredictions`.
    """

    def __init__(self, store: FeatureStore, media_dirs: Sequence[str] = (), run=None):
        from features_store.viewer.source import SourceFinder

        self.store = store
        self.sources = SourceFinder(media_dirs)
        self.run = run
        self._lock = threading.Lock()
        self._videos: dict[str, VideoGroup] = {}
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._schemas: dict[tuple[str, str], ArraySchema] = {}
        self._metadata: dict[str, dict[str, dict[str, Any]]] = {}

    # --- opening (metadata only) ---
    def group(self, video_id: str) -> VideoGroup:
        with self._lock:
            if video_id not in self._videos:
                if video_id not in self.store:
                    raise ViewerError(f"{self.store.location}: no video {video_id!r}")
                self._videos[video_id] = self.store.video(video_id)
            return self._videos[video_id]

    def metadata(self, video_id: str) -> dict[str, dict[str, Any]]:
        """Array name -> zarr.json of ``video_id`` (read once)."""
        group = self.group(video_id)
        with self._lock:
            if video_id not in self._metadata:
                self._metadata[video_id] = group.array_metadata()
            return self._metadata[video_id]

    def array(self, video_id: str, name: str) -> zarr.Array:
        key = (video_id, name)
        with self._lock:
            if key in self._arrays:
                return self._arrays[key]
        array = self.group(video_id).array(name)
        with self._lock:
            self._arrays[key] = array
            self._schemas[key] = ArraySchema.from_array(name, array)
        return array

    def schema(self, video_id: str, name: str) -> ArraySchema:
        self.array(video_id, name)
        return self._schemas[(video_id, name)]

    def has(self, video_id: str, name: str) -> bool:
        return name in self.metadata(video_id)

    def attributes(self, video_id: str, name: str) -> dict[str, Any]:
        return dict(self.metadata(video_id)[name].get("attributes") or {})

    # --- the video list ---
    def index(self) -> dict[str, Any]:
        """Every video: complete, T, duration, features, source; the store's failures (metadata only)."""
        videos = []
        for video_id, metadata in self.store.videos_metadata().items():
            described = describe_video(video_id, metadata["attributes"], metadata["arrays"])
            videos.append({"video_id": video_id, "complete": described["complete"], "T": described["T"],
                           "duration_s": described["duration_s"], "fps": described["fps"],
                           "features": sorted(described["features"]), "n_words": described["n_words"],
                           "source_name": described["source"]["name"],
                           "refused": sorted(name for name, array in described["arrays"].items() if "error" in array)})
        return {"store": self.store.location, "videos": videos, "failures": self.store.failures(),
                "run": None if self.run is None else str(self.run.run_dir)}

    # --- one video ---
    def heat_features(self, video_id: str) -> list[dict[str, Any]]:
        """The arrays offered as heat strips: features with at most :data:`HEAT_MAX_ROW_VALUES` values a row, on the
        frame clock or on their own clock with a per-frame row index."""
        offered = []
        metadata = self.metadata(video_id)
        row_index = self._row_indexes(video_id)
        for name, meta in metadata.items():
            attrs = meta.get("attributes") or {}
            schema = ArraySchema.from_attributes(name, attrs)
            shape = meta.get("shape") or []
            if schema.kind != "feature" or name in NOT_HEAT or len(shape) < 2:
                continue
            if math.prod(shape[1:]) > HEAT_MAX_ROW_VALUES or np.dtype(meta["data_type"]).kind not in "biuf":
                continue
            if not schema.per_frame and name not in row_index:
                continue
            offered.append({"name": name, "values_per_row": math.prod(shape[1:]), "clock": schema.clock,
                            "units": schema.units, "description": schema.description})
        return offered

    def _row_indexes(self, video_id: str) -> dict[str, str]:
        """Own-clock array -> the per-frame index array pointing into it (``mel64`` -> ``mel64_row``)."""
        found = {}
        for name, meta in self.metadata(video_id).items():
            attrs = meta.get("attributes") or {}
            if attrs.get("kind") == "index" and attrs.get("per_frame") and attrs.get("indexes"):
                found[attrs["indexes"]] = name
        return found

    def audio_strip(self, video_id: str) -> str | None:
        offered = {entry["name"] for entry in self.heat_features(video_id)}
        return next((name for name in AUDIO_STRIPS if name in offered), None)

    def video(self, video_id: str) -> dict[str, Any]:
        """One video's description for the page: T, times, size, source, the timelines it has (metadata only)."""
        group = self.group(video_id)
        attrs = group.attrs
        metadata = self.metadata(video_id)
        n_frames = int(attrs.get("n_frames") or metadata["frame_time"]["shape"][0])
        heat = self.heat_features(video_id)
        source = self.sources.find(attrs.get("source_name"), attrs.get("source_size_bytes"))
        fer_columns = self.attributes(video_id, "fer").get("columns") if "fer" in metadata else None
        default = next((n for n in ("fer_features", "logmel", "bert") if any(e["name"] == n for e in heat)),
                       heat[0]["name"] if heat else None)
        return {
            "video_id": video_id, "T": n_frames, "complete": attrs.get("complete") is True,
            "duration_s": attrs.get("duration_s"), "fps": attrs.get("fps"),
            "first_frame_time_s": attrs.get("first_frame_time_s"),
            "width": attrs.get("width"), "height": attrs.get("height"),
            "source": {"name": attrs.get("source_name"), "reachable": source.path is not None,
                       "reason": source.reason},
            "n_words": len(attrs["words"]) if isinstance(attrs.get("words"), list) else None,
            "arrays": {name: {"shape": meta.get("shape"), "dtype": str(meta.get("data_type"))}
                       for name, meta in metadata.items()},
            "has": {name: name in metadata for name in ("face_valid", "face_box", "face_crop", "landmarks68",
                                                        "face_align", "fer", "audio_valid", "word_index")},
            "fer_columns": fer_columns,
            "audio_strip": self.audio_strip(video_id),
            "heat_features": heat,
            "default_feature": default,
            "default_window": [0, min(n_frames, DEFAULT_WINDOW_FRAMES)],
            "tasks": self.run.tasks_for(video_id) if self.run is not None else {},
        }

    def n_frames(self, video_id: str) -> int:
        return int(self.metadata(video_id)["frame_time"]["shape"][0])

    # --- a range of frames ---
    def _frame_times(self, video_id: str, edges: np.ndarray, exact: bool) -> tuple[list[float], list[float] | None]:
        """Times (s) of the column ``edges`` (the last: the end of the last frame) and, when ``exact``, of every frame
        in the range plus that end."""
        frame_time = self.array(video_id, "frame_time")
        n_frames = frame_time.shape[0]
        start, stop = int(edges[0]), int(edges[-1])
        if exact:
            times = read_rows(frame_time, start, min(stop + 1, n_frames)).astype(np.float64)
        else:
            times = rows_at(frame_time, edges[edges < n_frames]).astype(np.float64)
        if stop >= n_frames:  # the end of the last frame: one frame interval after its start
            times = np.append(times, times[-1] + self._last_interval(video_id))
        if exact:
            return times[edges - start].tolist(), times.tolist()
        return times.tolist(), None

    def _last_interval(self, video_id: str) -> float:
        """The last frame's duration (s): the interval before it, or 1 / fps for a one-frame video."""
        return _last_step(self.array(video_id, "frame_time"), 1.0 / float(self.group(video_id).attrs.get("fps") or 25))

    def range(self, video_id: str, start: int, stop: int, bins: int = 1000, feature: str | None = None,
              series: Sequence[str] | None = None) -> dict[str, Any]:
        """Timelines of frames ``[start, stop)`` in at most ``bins`` columns (see the module docstring).

        ``series`` (default: all) chooses among ``face_valid``, ``audio_valid``, ``words``, ``fer``, ``audio``
        (the mel strip), ``heat`` (``feature`` as a heat strip) and ``tasks`` (the run's predictions and labels).
        Per-frame series share ``edges`` (frame indices) and ``time_s`` (their times; the last is the end of the last
        frame); own-clock strips carry their own ``time_s``.
        """
        n_frames = self.n_frames(video_id)
        start, stop = max(0, int(start)), min(n_frames, int(stop))
        if stop <= start:
            raise ViewerError(f"{video_id}: empty frame range [{start}, {stop}) (the video has {n_frames} frames)")
        bins = max(1, min(int(bins), MAX_BINS))
        wanted = set(series) if series is not None else {"face_valid", "audio_valid", "words", "fer", "audio",
                                                         "heat", "tasks"}
        exact = stop - start <= EXACT_ROWS
        edges = _edges(start, stop, bins)
        time_s, frame_time_s = self._frame_times(video_id, edges, exact)
        answer: dict[str, Any] = {"video_id": video_id, "start": start, "stop": stop, "exact": exact,
                                  "edges": edges.tolist(), "time_s": time_s}
        if frame_time_s is not None:
            answer["frame_time_s"] = frame_time_s
        for name in ("face_valid", "audio_valid"):
            if name in wanted and self.has(video_id, name):
                fraction, _ = _binned(self.array(video_id, name), edges, exact)
                answer[name] = _finite_list(fraction, 3)
        if "words" in wanted:
            answer["words"] = self._words(video_id, time_s[0], time_s[-1])
        if "fer" in wanted and self.has(video_id, "fer"):
            valid = self._validity_rows(video_id, "fer", edges, exact)
            values, _ = _binned(self.array(video_id, "fer"), edges, exact, valid)
            answer["fer"] = {"columns": self.attributes(video_id, "fer").get("columns"),
                             "values": _finite_list(values, 3)}
        if "audio" in wanted:
            audio = self.audio_strip(video_id)
            if audio is not None:
                answer["audio"] = self._heat(video_id, audio, start, stop, bins)
        if "heat" in wanted and feature:
            answer["heat"] = self._heat(video_id, feature, start, stop, bins)
        if "tasks" in wanted and self.run is not None:
            answer["tasks"] = self.run.range(video_id, edges, exact, n_frames)
        return answer

    def _validity_rows(self, video_id: str, name: str, edges: np.ndarray, exact: bool) -> np.ndarray | None:
        """The flags of ``name``'s validity array at the rows :func:`_binned` reads (None: it has none)."""
        validity = self.attributes(video_id, name).get("validity")
        if not validity or not self.has(video_id, validity):
            return None
        array = self.array(video_id, validity)
        return read_rows(array, int(edges[0]), int(edges[-1])) if exact else rows_at(array, edges[:-1])

    def _words(self, video_id: str, start_s: float, stop_s: float) -> dict[str, Any]:
        """The words overlapping ``[start_s, stop_s)`` with their index in the ``words`` attribute."""
        words = self.group(video_id).attrs.get("words")
        if not isinstance(words, list):
            return {"items": [], "too_many": False}
        found = [{"index": k, "text": w.get("text"), "start": w.get("start"), "end": w.get("end"),
                  "conf": w.get("conf")}
                 for k, w in enumerate(words) if w.get("end", 0) > start_s and w.get("start", 0) < stop_s]
        if len(found) > MAX_WORDS:
            return {"items": [], "too_many": True, "count": len(found)}
        return {"items": found, "too_many": False}

    def _heat(self, video_id: str, name: str, start: int, stop: int, bins: int) -> dict[str, Any]:
        """Array ``name`` over frames ``[start, stop)`` as a heat strip (see :func:`_heat_bytes`)."""
        offered = {entry["name"]: entry for entry in self.heat_features(video_id)}
        if name not in offered:
            raise ViewerError(f"{video_id}: {name!r} cannot be shown as a heat strip (it has "
                              f"{sorted(offered)})")
        array = self.array(video_id, name)
        schema = self.schema(video_id, name)
        attrs = self.attributes(video_id, name)
        wanted = None
        if attrs.get("column_blocks") and attrs.get("block_size") and "t" in attrs["column_blocks"]:
            block = int(attrs["block_size"])  # stacked context blocks (logmel): the frame's own block only
            first = attrs["column_blocks"].index("t") * block
            wanted = list(range(first, first + block))
        if schema.per_frame:
            first_row, stop_row = start, stop
            times_of = None
        else:
            # rows from the one nearest the first frame to the one nearest the frame after the range (the
            # range's end), or to the last row when the range ends the video
            index = self.array(video_id, self._row_indexes(video_id)[name])
            n_frames = index.shape[0]
            ends = rows_at(index, [start, stop] if stop < n_frames else [start]).astype(np.int64)
            first_row = max(0, int(ends[0]))
            stop_row = min(array.shape[0], int(ends[1])) if stop < n_frames else array.shape[0]
            stop_row = max(stop_row, min(array.shape[0], first_row + 1))
            times_of = self.array(video_id, schema.clock)
        n_rows = stop_row - first_row
        exact = n_rows <= EXACT_ROWS and n_rows * math.prod(array.shape[1:]) <= EXACT_VALUES
        edges = _edges(first_row, stop_row, bins)
        valid = None
        if schema.validity and self.has(video_id, schema.validity):
            flags = self.array(video_id, schema.validity)
            valid = read_rows(flags, first_row, stop_row) if exact else rows_at(flags, edges[:-1])
        values, fraction = _binned(array, edges, exact, valid)
        flat = values.reshape(len(values), -1)
        groups = _column_groups(flat.shape[1], wanted)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column without valid rows is NaN, as meant
            grouped = np.stack([np.nanmean(flat[:, group], axis=1) if len(group) > 1 else flat[:, group[0]]
                                for group in groups], axis=1)
        data, value_range = _heat_bytes(grouped, schema.units)
        columns = attrs.get("columns")
        labels = [columns[int(g[0])] if isinstance(columns, list) and len(g) == 1 and int(g[0]) < len(columns)
                  else f"{int(g[0])}" + (f"-{int(g[-1])}" if len(g) > 1 else "") for g in groups]
        answer = {"name": name, "rows": len(groups), "columns": len(values), "data": data, "range": value_range,
                  "units": schema.units, "row_labels": labels, "valid": _finite_list(fraction, 2)}
        if times_of is not None:
            n_times = times_of.shape[0]
            times = (read_rows(times_of, first_row, min(stop_row + 1, n_times)) if exact
                     else rows_at(times_of, edges[edges < n_times])).astype(np.float64)
            if stop_row >= n_times:
                times = np.append(times, times[-1] + _last_step(times_of, 0.01))
            answer["time_s"] = (times[edges - first_row] if exact else times).tolist()
        return answer

    # --- one frame ---
    def frame(self, video_id: str, index: int) -> dict[str, Any]:
        """Frame ``index``'s details: time, face (box in source px; landmarks in crop px and, through the inverse of
        ``face_align``, in source px), the word spanning it, its ``fer`` row, the run's predictions and labels."""
        n_frames = self.n_frames(video_id)
        if not 0 <= index < n_frames:
            raise ViewerError(f"{video_id}: no frame {index} (frames 0 to {n_frames - 1})")
        group = self.group(video_id)

        def row(name: str) -> np.ndarray | None:
            return read_rows(self.array(video_id, name), index, index + 1)[0] if self.has(video_id, name) else None

        time_s = float(row("frame_time"))
        face_valid = row("face_valid")
        details: dict[str, Any] = {"video_id": video_id, "index": index, "time_s": time_s,
                                   "face_valid": None if face_valid is None else bool(face_valid)}
        if face_valid is not None and face_valid:
            box = row("face_box")
            align = row("face_align")
            matrix = None
            if align is not None and abs(np.linalg.det(align[:, :2].astype(np.float64))) > 1e-12:
                matrix = align.astype(np.float64)  # source px -> crop px: [x', y'] = M[:, :2] @ [x, y] + M[:, 2]
            details["box"] = None if box is None else [round(float(v), 2) for v in box]
            if box is not None and matrix is not None:
                corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]], float)
                details["box_crop"] = np.round(corners @ matrix[:, :2].T + matrix[:, 2], 2).tolist()
            points = row("landmarks68")
            if points is not None:
                details["landmarks_crop"] = np.round(points.astype(np.float64), 2).tolist()
                if matrix is not None:  # back to the source frame through the inverse similarity
                    source = np.linalg.solve(matrix[:, :2], (points.astype(np.float64) - matrix[:, 2]).T).T
                    details["landmarks_source"] = np.round(source, 2).tolist()
        if self.has(video_id, "fer"):
            values = row("fer")
            details["fer"] = {"columns": self.attributes(video_id, "fer").get("columns"),
                              "values": [round(float(v), 4) for v in values] if face_valid else None}
        audio_valid = row("audio_valid")
        details["audio_valid"] = None if audio_valid is None else bool(audio_valid)
        word_index = row("word_index")
        details["word"] = None
        if word_index is not None and int(word_index) >= 0:
            words = group.attrs.get("words") or []
            if int(word_index) >= len(words):
                raise StoreError(f"{video_id}/word_index: frame {index} points to word {int(word_index)}, the "
                                 f"'words' attribute has {len(words)} (run python -m features_store verify)")
            word = words[int(word_index)]
            details["word"] = {"index": int(word_index), "text": word.get("text"), "start": word.get("start"),
                               "end": word.get("end"), "conf": word.get("conf")}
        if self.run is not None:
            details["tasks"] = self.run.at(video_id, index, n_frames)
        return details

    def crop_rgb(self, video_id: str, index: int) -> np.ndarray | None:
        """Frame ``index``'s face crop (S, S, 3) uint8, or None where it has no face or no crops."""
        if not self.has(video_id, "face_crop"):
            return None
        if self.has(video_id, "face_valid") and not read_rows(self.array(video_id, "face_valid"), index, index + 1)[0]:
            return None
        return read_rows(self.array(video_id, "face_crop"), index, index + 1)[0]

    def source_rgb(self, video_id: str, index: int) -> np.ndarray | None:
        """Frame ``index`` decoded from the source video (None when it is not reachable)."""
        attrs = self.group(video_id).attrs
        found = self.sources.find(attrs.get("source_name"), attrs.get("source_size_bytes"))
        if found.path is None:
            return None
        frame_time = self.array(video_id, "frame_time")
        times = read_rows(frame_time, max(0, index - 1), min(frame_time.shape[0], index + 2))
        time_s = float(read_rows(frame_time, index, index + 1)[0])
        interval = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / float(attrs.get("fps") or 25.0)
        return self.sources.decoder(found.path).rgb(index, time_s, interval)
