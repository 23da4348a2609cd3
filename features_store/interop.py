"""Stores between teams: merge, diff, HDF5 export/import, and import of per-video ``.npy`` folders.

Everything here needs only zarr, numpy and (for HDF5) h5py; nothing is unpickled. Operations that write plan first
and write only when the plan has no conflict, so a refused merge or import changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features_store.common import now_utc
from features_store.recipes import recipe
from features_store.store import STORE_FORMAT, FeatureStore, StoreError, VideoGroup

H5_ATTRS_ENCODING = "json"
"""HDF5 attributes hold JSON text (h5py cannot hold nested lists and dicts); every value round-trips exactly."""


class InteropError(StoreError):
    """A merge, import or export that would lose or mix data; nothing was written."""


def content_sha256(array) -> str:
    """sha256 of a zarr array's dtype, shape and bytes, read chunk by chunk along time."""
    digest = hashlib.sha256(f"{array.dtype.str}{tuple(array.shape)}".encode())
    if array.ndim == 0:
        digest.update(np.ascontiguousarray(array[...]).tobytes())
    else:
        for start in range(0, array.shape[0], array.chunks[0]):
            digest.update(np.ascontiguousarray(array[start:start + array.chunks[0]]).tobytes())
    return digest.hexdigest()


def _copy_array(source: VideoGroup, target: VideoGroup, name: str) -> None:
    array = source.array(name)
    target.write(name, array[...], dict(array.attrs))
    attribute = array.attrs.get("indexes_attribute")  # e.g. word_index points into the group's `words` list
    if attribute is not None and attribute in source.attrs:
        target.set_attribute(attribute, source.attrs[attribute])


@dataclass
class MergePlan:
    """What a merge would do: whole videos to copy, arrays to add to videos both stores hold, and conflicts."""

    new_videos: list[tuple[FeatureStore, str]] = field(default_factory=list)
    new_arrays: list[tuple[FeatureStore, str, str]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def plan_merge(sources: Sequence[FeatureStore], target: FeatureStore) -> MergePlan:
    """Compare every complete video of ``sources`` with ``target`` (and with the sources before it)."""
    plan = MergePlan()
    seen: dict[tuple[str, str], tuple[str, dict]] = {}  # (video, array) -> (where, recipe)
    seen_source: dict[str, tuple[str, str | None]] = {}
    for video_id in target.video_ids():
        video = target.video(video_id)
        seen_source[video_id] = (target.location, video.attrs.get("source_sha256"))
        for name in video.array_names():
            seen[(video_id, name)] = (target.location, recipe(video.array(name).attrs.get("provenance")))
    for store in sources:
        for video_id in store.video_ids():
            video = store.video(video_id)
            if not video.complete:
                continue  # a partial group is never shared
            sha = video.attrs.get("source_sha256")
            if video_id in seen_source and seen_source[video_id][1] != sha:
                plan.conflicts.append(f"video {video_id!r}: {seen_source[video_id][0]} has it from source sha256 "
                                      f"{str(seen_source[video_id][1])[:12]}..., {store.location} from "
                                      f"{str(sha)[:12]}...")
                continue
            is_new = video_id not in seen_source
            seen_source.setdefault(video_id, (store.location, sha))
            if is_new:
                plan.new_videos.append((store, video_id))
            for name in video.array_names():
                ours = recipe(video.array(name).attrs.get("provenance"))
                if (video_id, name) not in seen:
                    seen[(video_id, name)] = (store.location, ours)
                    if not is_new:
                        plan.new_arrays.append((store, video_id, name))
                elif seen[(video_id, name)][1] != ours:
                    where, theirs = seen[(video_id, name)]
                    differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
                    plan.conflicts.append(f"{video_id}/{name}: provenance differs between {where} and "
                                          f"{store.location} ({', '.join(differing)})")
    return plan


def merge(sources: Sequence[str], into: str) -> MergePlan:
    """Union of the videos and features of ``sources`` in store ``into`` (created when missing). A feature whose
    provenance differs between two sides (or a video id from two different source files) raises
    :class:`InteropError` naming both sides, before anything is written."""
    source_stores = [FeatureStore(location, mode="r") for location in sources]
    target = FeatureStore(into, mode="a")
    plan = plan_merge(source_stores, target)
    if plan.conflicts:
        raise InteropError("merge refused, nothing written: " + "; ".join(plan.conflicts))
    target.begin_writing(now_utc())
    for store, video_id in plan.new_videos:
        source = store.video(video_id)
        group = target.create_video(video_id, {k: v for k, v in source.attrs.items() if k != "complete"})
        for name in source.array_names():
            _copy_array(source, group, name)
        group.set_complete(True)
    for store, video_id, name in plan.new_arrays:
        group = target.video(video_id)
        group.set_complete(False)
        _copy_array(store.video(video_id), group, name)
        group.set_complete(True)
    target.consolidate()
    return plan


def diff(a: FeatureStore, b: FeatureStore) -> dict[str, Any]:
    """Per video: arrays only in one store, and arrays in both whose provenance (recipe) or content differ."""
    report: dict[str, Any] = {"only_in_a": sorted(set(a.video_ids()) - set(b.video_ids())),
                              "only_in_b": sorted(set(b.video_ids()) - set(a.video_ids())), "videos": {}}
    for video_id in sorted(set(a.video_ids()) & set(b.video_ids())):
        va, vb = a.video(video_id), b.video(video_id)
        names_a, names_b = set(va.array_names()), set(vb.array_names())
        entry = {"only_in_a": sorted(names_a - names_b), "only_in_b": sorted(names_b - names_a),
                 "provenance_differs": [], "content_differs": []}
        for name in sorted(names_a & names_b):
            if recipe(va.array(name).attrs.get("provenance")) != recipe(vb.array(name).attrs.get("provenance")):
                entry["provenance_differs"].append(name)
            if content_sha256(va.array(name)) != content_sha256(vb.array(name)):
                entry["content_differs"].append(name)
        if any(entry.values()):
            report["videos"][video_id] = entry
    report["identical"] = not (report["only_in_a"] or report["only_in_b"] or report["videos"])
    return report


def export_h5(store: FeatureStore, path: str | Path) -> None:
    """The store as one HDF5 file: ``/videos/<id>/<array>`` datasets (same dtype, shape, time chunks) with the
    same attributes (JSON text), root attributes too."""
    import h5py

    with h5py.File(path, "w") as out:
        _write_h5_attrs(out, dict(store.root.attrs))
        out.attrs["affectsync_attrs_encoding"] = H5_ATTRS_ENCODING
        videos = out.create_group("videos")
        for video_id in store.video_ids():
            video = store.video(video_id)
            group = videos.create_group(video_id)
            _write_h5_attrs(group, video.attrs)
            for name in video.array_names():
                array = video.array(name)
                chunks = tuple(min(c, n) for c, n in zip(array.chunks, array.shape)) if all(array.shape) else None
                dataset = group.create_dataset(name, data=array[...], chunks=chunks)  # empty/0-d: contiguous
                _write_h5_attrs(dataset, dict(array.attrs))


def import_h5(path: str | Path, into: str) -> list[str]:
    """The videos of an :func:`export_h5` file into store ``into``; a video id the store already holds raises
    :class:`InteropError` before anything is written. Returns the imported video ids."""
    import h5py

    target = FeatureStore(into, mode="a")
    with h5py.File(path, "r") as source:
        if source.attrs.get("affectsync_attrs_encoding") != H5_ATTRS_ENCODING or "videos" not in source:
            raise InteropError(f"{path}: not an affectsync HDF5 export (no attrs encoding / videos group)")
        root = _read_h5_attrs(source.attrs)
        if root.get("format") != STORE_FORMAT:
            raise InteropError(f"{path}: exported from store format {root.get('format')!r}, expected {STORE_FORMAT!r}")
        video_ids = sorted(source["videos"])
        taken = [video_id for video_id in video_ids if video_id in target]
        if taken:
            raise InteropError(f"{path}: {into} already holds {', '.join(taken)}; nothing imported")
        target.begin_writing(now_utc())
        for video_id in video_ids:
            group_in = source["videos"][video_id]
            attrs = _read_h5_attrs(group_in.attrs)
            group = target.create_video(video_id, {k: v for k, v in attrs.items() if k != "complete"})
            for name, dataset in group_in.items():
                group.write(name, dataset[...], _read_h5_attrs(dataset.attrs))
            group.set_complete(attrs.get("complete") is True)
    target.consolidate()
    return video_ids


def _write_h5_attrs(node, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        node.attrs[key] = json.dumps(value)


def _read_h5_attrs(attrs) -> dict[str, Any]:
    return {key: json.loads(value) for key, value in attrs.items() if key != "affectsync_attrs_encoding"}


def import_npy(folder: str | Path, into: str, fps: float | None = None) -> list[str]:
    """Per-video folders of ``.npy`` features (``<folder>/<video_id>/<feature>.npy``, the ABAW teams' layout) into
    store ``into``. Frame times come from ``frame_time.npy`` in the video's folder when given, else ``i / fps``
    (recorded as such). Every file's name and sha256 go into the provenance; files load with
    ``allow_pickle=False``. Rows must agree across a video's features (T); a mismatch raises before writing."""
    folder = Path(folder)
    videos = sorted(path for path in folder.iterdir() if path.is_dir() and any(path.glob("*.npy")))
    if not videos:
        raise InteropError(f"{folder}: no <video_id>/<feature>.npy folders")
    target = FeatureStore(into, mode="a")
    loaded = {video.name: _load_npy_video(video, fps) for video in videos}
    taken = [video_id for video_id in loaded if video_id in target]
    if taken:
        raise InteropError(f"{into} already holds {', '.join(taken)}; nothing imported")
    target.begin_writing(now_utc())
    for video_id, (frame_time, frame_time_origin, features) in loaded.items():
        duration_s = float(frame_time[-1] - frame_time[0]) + (float(np.median(np.diff(frame_time)))
                                                               if len(frame_time) > 1 else 0.0)
        group = target.create_video(video_id, {
            "source_name": folder.name + "/" + video_id, "source_size_bytes": sum(f[1]["size_bytes"] for f in
                                                                                    features.values()),
            "source_sha256": hashlib.sha256("".join(f[1]["sha256"] for f in features.values()).encode()).hexdigest(),
            "width": None, "height": None, "fps": fps, "n_frames": len(frame_time), "duration_s": duration_s,
            "imported_from": "npy", "created_utc": now_utc()})
        group.write("frame_time", frame_time, {"units": "s", "per_frame": True, "provenance": _npy_provenance(
            frame_time_origin, {})})
        for name, (data, origin) in features.items():
            group.write(name, data, {"per_frame": True, "provenance": _npy_provenance(origin, {"feature": name})})
        group.set_complete(True)
    target.consolidate()
    return list(loaded)


def _load_npy_video(video: Path, fps: float | None) -> tuple[np.ndarray, dict, dict[str, tuple[np.ndarray, dict]]]:
    features = {}
    for path in sorted(video.glob("*.npy")):
        if path.stem != "frame_time":
            features[path.stem] = (np.load(path, allow_pickle=False), _file_origin(path))
    lengths = {name: len(data) for name, (data, _) in features.items()}
    if len(set(lengths.values())) > 1:
        raise InteropError(f"{video}: features disagree on the number of frames: {lengths}")
    n_frames = next(iter(lengths.values()))
    times = video / "frame_time.npy"
    if times.is_file():
        frame_time, origin = np.load(times, allow_pickle=False).astype(np.float64), _file_origin(times)
        if frame_time.shape != (n_frames,):
            raise InteropError(f"{times}: {frame_time.shape[0]} frame times for {n_frames} feature rows")
    elif fps:
        frame_time, origin = np.arange(n_frames) / fps, {"derived": f"i / fps, fps = {fps} (no frame_time.npy)"}
    else:
        raise InteropError(f"{video}: no frame_time.npy; give --fps to derive frame times as i / fps")
    return frame_time, origin, features


def _file_origin(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        sha = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"file": path.name, "sha256": sha, "size_bytes": path.stat().st_size}


def _npy_provenance(origin: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {"extractor": "import_npy", "version": "1", "parameters": {}, "source_file": origin,
            "libraries": {"numpy": np.__version__}, "created_utc": now_utc(), **extra}

