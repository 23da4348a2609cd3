"""Consistency checks of a store, runnable without the extractors installed.

Array attributes that drive the checks (written by the extractors):
``per_frame`` (rows == T), ``time_axis`` (rows == rows of the named axis array), ``validity`` (name of the validity
array whose False rows must be zeros), ``indexes`` (values are row indices into the named array),
``indexes_attribute`` (values index the named list attribute of the group, -1 for none; items with ``start`` and
``end`` must span the frame time), ``provenance``.
"""

from __future__ import annotations

import numpy as np

from features_store.store import FeatureStore, VideoGroup

REQUIRED_VIDEO_ATTRS = ("source_name", "source_size_bytes", "source_sha256", "n_frames", "width", "height",
                        "fps", "duration_s", "complete")
REQUIRED_PROVENANCE_KEYS = ("extractor", "version", "parameters", "libraries", "created_utc")


def verify_video(video: VideoGroup, require_complete: bool = True) -> list[str]:
    """Problems found in one video group (empty when consistent)."""
    attrs = video.attrs
    problems = [f"missing group attribute {key!r}" for key in REQUIRED_VIDEO_ATTRS if key not in attrs]
    if require_complete and attrs.get("complete") is not True:
        problems.append("not complete (partial extraction: the run that wrote it did not finish)")
    names = video.array_names()
    if "frame_time" not in names:
        return problems + ["no frame_time array"]
    frame_time = video.read("frame_time")
    n_frames = attrs.get("n_frames")
    if frame_time.shape != (n_frames,) or frame_time.dtype != np.float64:
        problems.append(f"frame_time has shape {frame_time.shape} {frame_time.dtype}, expected ({n_frames},) float64")
    if not np.all(np.isfinite(frame_time)) or np.any(np.diff(frame_time) <= 0):
        problems.append("frame_time is not finite and strictly increasing")
    n_frames = len(frame_time)
    arrays = {name: video.array(name) for name in names}
    for name, array in arrays.items():
        problems += [f"{name}: {p}" for p in _verify_array(name, array, arrays, n_frames)]
        attribute = array.attrs.get("indexes_attribute")
        if attribute is not None:
            problems += [f"{name}: {p}" for p in _verify_attribute_index(array[...], attrs.get(attribute), attribute,
                                                                         frame_time)]
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


def _verify_array(name: str, array, arrays: dict, n_frames: int) -> list[str]:
    meta = dict(array.attrs)
    problems = []
    provenance = meta.get("provenance")
    if not isinstance(provenance, dict):
        problems.append("no provenance attribute")
    else:
        problems += [f"provenance lacks {key!r}" for key in REQUIRED_PROVENANCE_KEYS if key not in provenance]
    if meta.get("per_frame") and array.shape[0] != n_frames:
        problems.append(f"{array.shape[0]} rows, expected T={n_frames}")
    axis = meta.get("time_axis")
    if axis is not None and (axis not in arrays or arrays[axis].shape[0] != array.shape[0]):
        problems.append(f"rows do not match its time axis {axis!r}")
    data = array[...]
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        problems.append("holds NaN or infinite values")
    validity = meta.get("validity")
    if validity is not None:
        if validity not in arrays or arrays[validity].dtype != np.bool_:
            problems.append(f"its validity array {validity!r} is missing or not bool")
        else:
            invalid = ~arrays[validity][...]
            if np.any(data[invalid]):
                problems.append(f"non-zero rows where {validity} is false")
    target = meta.get("indexes")
    if target is not None:
        if target not in arrays:
            problems.append(f"indexes missing array {target!r}")
        elif data.size and (data.min() < 0 or data.max() >= arrays[target].shape[0]):
            problems.append(f"row indices outside 0..{arrays[target].shape[0] - 1}")
    if name.endswith("_time") and data.ndim == 1 and np.any(np.diff(data) <= 0):
        problems.append("time axis is not strictly increasing")
    return problems


def verify_store(store: FeatureStore) -> dict[str, list[str]]:
    """Problems per video id (only videos with problems are listed)."""
    report = {}
    for video_id in store.video_ids():
        problems = verify_video(store.video(video_id))
        if problems:
            report[video_id] = problems
    return report
