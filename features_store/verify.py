"""Consistency checks of a store, runnable without the extractors installed.

Each array's :class:`~features_store.schema.ArraySchema` (its attributes, as the extractors wrote them) drives the
checks: its clock (``frame``: rows == T; another: rows == rows of that time array), its kind (validity arrays bool,
index arrays integers, time arrays strictly increasing), ``validity`` (the validity array whose False rows must be
zeros), ``indexes`` (values are row indices into the named array), ``indexes_attribute`` (values index the named list
attribute of the group, -1 for none; items with ``start`` and ``end`` must span the frame time), ``columns`` (one
name per column), its Zarr ``dimension_names`` (when stored: stores written before them have none), and
``provenance``. Group attributes: ``complete`` (the commit marker) and
``manifest`` (each array's dtype and shape at commit: arrays lost, added or changed since are reported; groups with
one have every chunk on disk, so a missing chunk is reported too). Validity arrays must be bool, index arrays
integers. Arrays are read in blocks of whole chunks; a store is never trusted to hold anything but numbers.
"""

from __future__ import annotations

import numpy as np

from features_store.reading import read_rows
from features_store.schema import ArraySchema
from features_store.store import FeatureStore, VideoGroup

REQUIRED_VIDEO_ATTRS = ("source_name", "source_size_bytes", "source_sha256", "n_frames", "width", "height",
                        "fps", "duration_s", "complete")
REQUIRED_PROVENANCE_KEYS = ("extractor", "version", "parameters", "libraries", "created_utc")


ROW_BLOCK_BYTES = 64 << 20
"""Arrays are checked in blocks of whole chunks of about this many bytes: memory stays flat with video length."""


def verify_video(video: VideoGroup, require_complete: bool = True) -> list[str]:
    """Problems found in one video group (empty when consistent)."""
    attrs = video.attrs
    problems = [f"missing group attribute {key!r}" for key in REQUIRED_VIDEO_ATTRS if key not in attrs]
    if require_complete and attrs.get("complete") is not True:
        problems.append("not complete (partial extraction: the run that wrote it did not finish)")
    names = video.array_names()
    problems += _verify_manifest(attrs, video)
    if "frame_time" not in names:
        return problems + ["no frame_time array"]
    try:
        frame_time = video.read("frame_time")
    except Exception as exc:  # noqa: BLE001  (refused or truncated: nothing else can be checked against it)
        return problems + [f"frame_time: unreadable: {exc}"]
    n_frames = attrs.get("n_frames")
    if frame_time.shape != (n_frames,) or frame_time.dtype != np.float64:
        problems.append(f"frame_time has shape {frame_time.shape} {frame_time.dtype}, expected ({n_frames},) float64")
    if not np.all(np.isfinite(frame_time)) or np.any(np.diff(frame_time) <= 0):
        problems.append("frame_time is not finite and strictly increasing")
    n_frames = len(frame_time)
    arrays = {}
    for name in names:
        try:
            arrays[name] = video.array(name)
        except Exception as exc:  # noqa: BLE001  (unreadable metadata, refused codecs: a problem, not a crash)
            problems.append(f"{name}: {exc}")
    for name, array in arrays.items():
        try:
            found = _verify_array(name, array, arrays, n_frames, isinstance(attrs.get("manifest"), dict))
        except Exception as exc:  # noqa: BLE001  (a truncated or corrupt chunk)
            found = [f"unreadable: {type(exc).__name__}: {exc}"]
        problems += [f"{name}: {p}" for p in found]
        attribute = array.attrs.get("indexes_attribute")
        if attribute is not None and not found:
            problems += [f"{name}: {p}" for p in _verify_attribute_index(read_rows(array), attrs.get(attribute),
                                                                         attribute, frame_time)]
    return problems


def _verify_attribute_index(index: np.ndarray, items, attribute: str, frame_time: np.ndarray) -> list[str]:
    """``index`` (T,) points into the group's list attribute ``items`` (-1: none); timed items span their frames."""
    if not isinstance(items, list):
        return [f"indexes the group attribute {attribute!r}, which is missing or not a list"]
    if index.size and (index.min() < -1 or index.max() >= len(items)):
        return [f"values outside -1..{len(items) - 1} (indices into {attribute!r})"]
    if items and all(isinstance(item, dict) and {"start", "end"} <= item.keys() for item in items):
        start = np.array([item["start"] for item in items] + [np.inf])[index]
        end = np.array([item["end"] for item in items] + [-np.inf])[index]
        used = index >= 0
        if np.any(used & ~((start <= frame_time) & (frame_time < end))):
            return [f"frames whose time lies outside the {attribute!r} item they point to"]
    return []


def _verify_manifest(attrs: dict, video: VideoGroup) -> list[str]:
    """A committed group's arrays are those its ``manifest`` lists, with the dtype and shape listed."""
    manifest = attrs.get("manifest")
    if attrs.get("complete") is not True or not isinstance(manifest, dict):
        return []  # partial groups are reported as such; groups committed before manifests existed have none
    stored = video.array_metadata()
    problems = [f"{name}: missing (the committed group has it)" for name in manifest if name not in stored]
    problems += [f"{name}: not in the manifest (added after the group was committed)" for name in stored
                 if name not in manifest]
    for name in sorted(set(manifest) & set(stored)):
        found = (stored[name].get("data_type"), stored[name].get("shape"))
        expected = (manifest[name].get("dtype"), manifest[name].get("shape"))
        if found != expected:
            problems.append(f"{name}: {found[0]} {found[1]}, but committed as {expected[0]} {expected[1]}")
    return problems


def _row_blocks(array) -> list[slice]:
    """Row ranges of whole chunks, about :data:`ROW_BLOCK_BYTES` each."""
    rows = array.shape[0] if array.ndim else 1
    chunk = array.chunks[0] if array.ndim else 1
    row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    step = max(chunk, ROW_BLOCK_BYTES // max(row_bytes, 1) // chunk * chunk)
    return [slice(start, min(start + step, rows)) for start in range(0, max(rows, 1), step)]


def _verify_array(name: str, array, arrays: dict, n_frames: int, all_chunks_written: bool) -> list[str]:
    """Problems of one array; ``all_chunks_written`` for groups whose writer stores every chunk (those with a
    manifest), where a missing chunk is damage rather than zeros left out."""
    meta = dict(array.attrs)
    schema = ArraySchema.from_array(name, array)
    problems = []
    provenance = meta.get("provenance")
    if not isinstance(provenance, dict):
        problems.append("no provenance attribute")
    else:
        problems += [f"provenance lacks {key!r}" for key in REQUIRED_PROVENANCE_KEYS if key not in provenance]
    if schema.per_frame and array.shape[0] != n_frames:
        problems.append(f"{array.shape[0]} rows, expected T={n_frames}")
    clock = schema.clock
    if not schema.per_frame and (clock not in arrays or arrays[clock].shape[0] != array.shape[0]):
        problems.append(f"rows do not match its time axis {clock!r}")
    problems += schema.problems(name, array.shape, array.dtype, array.metadata.dimension_names)
    if all_chunks_written and array.nchunks_initialized < array.nchunks:
        problems.append(f"{array.nchunks - array.nchunks_initialized} of {array.nchunks} chunks missing (a write "
                        "that did not finish, or a copy that lost files)")
    validity = schema.validity
    valid = None
    if validity is not None:
        if validity not in arrays or arrays[validity].dtype != np.bool_ or arrays[validity].shape[0] != array.shape[0]:
            problems.append(f"its validity array {validity!r} is missing, not bool or of another length")
        else:
            valid = read_rows(arrays[validity])
    target = schema.indexes
    if target is not None and target not in arrays:
        problems.append(f"indexes missing array {target!r}")
    if problems:
        return problems
    previous_last = None
    for rows in _row_blocks(array):
        data = read_rows(array, rows.start, rows.stop) if array.ndim else array[...]
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            problems.append("holds NaN or infinite values")
        if valid is not None and np.any(data[~valid[rows]]):
            problems.append(f"non-zero rows where {validity} is false")
        if target is not None and data.size and (data.min() < 0 or data.max() >= arrays[target].shape[0]):
            problems.append(f"row indices outside 0..{arrays[target].shape[0] - 1}")
        if schema.kind == "time" and data.ndim == 1 and data.size:
            steps = np.diff(data if previous_last is None else np.concatenate([[previous_last], data]))
            if np.any(steps <= 0):
                problems.append("time axis is not strictly increasing")
            previous_last = data[-1]
    return sorted(set(problems), key=problems.index)


def verify_store(store: FeatureStore) -> dict[str, list[str]]:
    """Problems per video id (only videos with problems are listed)."""
    report = {}
    for video_id in store.video_ids():
        problems = verify_video(store.video(video_id))
        if problems:
            report[video_id] = problems
    return report
