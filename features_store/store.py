"""The Zarr v3 feature store: one group per video under ``videos/<video_id>``, provenance on every array.

Layout (see design.md)::

    store.zarr/                      attrs: format
      videos/<video_id>/             attrs: source_name, source_size_bytes, source_sha256, width, height, fps, ...,
                                            manifest and complete (JSON true), written last, in one write
        frame_time (T,) float64      presentation time of each decoded frame, seconds
        <modality>_valid (T,) bool   validity per modality; invalid rows of its features are zeros
        <feature> (T, D) ...         one plain array per feature, attrs: provenance, columns, ...

Arrays are uncompressed and chunked along time in chunks of at least 1 MB of whole rows: features are read many times
in training, and raw chunks let :mod:`features_store.reading` read rows straight from the chunk files into place, at
``np.load`` speed (``make bench`` measures it); zarr, xarray and other readers open the same arrays as usual.
Nothing in a store is pickled or executed; a consumer needs only zarr and numpy.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from features_store.common import now_utc  # noqa: F401  (its home before features_store.common)
from features_store.errors import AffectsyncError
from features_store.reading import read_rows
from features_store.schema import ArraySchema

STORE_FORMAT = "affectsync-store/1"
VIDEOS_GROUP = "videos"
MIN_CHUNK_BYTES = 1 << 20
INTERRUPTED_WRITE_AGE_S = 60.0
SAFE_CODECS = frozenset({"bytes", "transpose", "crc32c", "zstd", "gzip", "blosc", "sharding_indexed"})
"""Codecs that decode bytes to numbers and nothing else (pickle-based object codecs are never read)."""


class StoreError(AffectsyncError, RuntimeError):
    """The store is missing, not an affectsync store, or inconsistent with a request."""


def refusal(where: str, codecs: set[str], dtype: str) -> str | None:
    """Why an array stored with ``codecs`` and ``dtype`` (its zarr.json names) is not read, or None: affectsync reads
    only numeric arrays with plain codecs (stores from elsewhere are not trusted: nothing is ever unpickled)."""
    try:
        numeric = np.dtype(dtype).kind in "biuf"
    except TypeError:
        numeric = False
    if codecs - SAFE_CODECS or not numeric:
        return (f"{where}: refused, stored as {dtype} with codecs {sorted(codecs)} (affectsync reads only numeric "
                f"arrays with {sorted(SAFE_CODECS)})")
    return None


def chunk_rows(shape: tuple[int, ...], itemsize: int, min_chunk_bytes: int = MIN_CHUNK_BYTES) -> tuple[int, ...]:
    """Chunk shape along time: whole rows, at least ``min_chunk_bytes`` per chunk (or the whole array)."""
    row_bytes = itemsize * math.prod(shape[1:])
    rows = max(1, min(shape[0], math.ceil(min_chunk_bytes / max(row_bytes, 1))))
    return (rows, *shape[1:])


def _children_metadata(store, prefixes: Sequence[str]) -> list[dict[str, dict[str, Any]]]:
    """For each folder prefix (``videos/``, ``videos/<id>/``), child name -> its zarr.json as plain JSON, all read
    concurrently (children whose metadata is missing or not JSON are left out)."""
    import asyncio

    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def child(prefix: str, name: str) -> tuple[str, dict[str, Any] | None]:
        buffer = await store.get(f"{prefix}{name}/zarr.json", prototype=default_buffer_prototype())
        try:
            return name, None if buffer is None else json.loads(buffer.to_bytes())
        except ValueError:
            return name, None

    async def folder(prefix: str) -> dict[str, dict[str, Any]]:
        names = [name async for name in store.list_dir(prefix)]
        found = await asyncio.gather(*(child(prefix, name) for name in names))
        return {name: metadata for name, metadata in found if metadata is not None}

    async def read_all() -> list[dict[str, dict[str, Any]]]:
        return list(await asyncio.gather(*(folder(prefix) for prefix in prefixes)))

    return sync(read_all())


def _child_metadata(group: zarr.Group) -> dict[str, dict[str, Any]]:
    """Child name -> its zarr.json as plain JSON (see :func:`_children_metadata`)."""
    return _children_metadata(group.store, [f"{group.path}/" if group.path else ""])[0]


class VideoGroup:
    """One video's group: its attributes, its arrays, and the ``complete`` marker."""

    def __init__(self, group: zarr.Group, video_id: str):
        self.group = group
        self.video_id = video_id

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def complete(self) -> bool:
        """True only when the attribute ``complete`` is JSON true: every array was written and checked."""
        return self.group.attrs.get("complete") is True

    @property
    def n_frames(self) -> int:
        return int(self.group.attrs["n_frames"])

    def array_metadata(self) -> dict[str, dict[str, Any]]:
        """Array name -> its zarr.json as plain JSON (``data_type``, ``shape``, ``codecs``...), sorted by name:
        read without zarr's parsing, so an array zarr cannot open is still listed (:meth:`array` says why)."""
        return {name: metadata for name, metadata in sorted(_child_metadata(self.group).items())
                if metadata.get("node_type") == "array"}

    def array_names(self) -> list[str]:
        return list(self.array_metadata())

    def array(self, name: str) -> zarr.Array:
        """Array ``name``; a :class:`StoreError` when it is missing, or stored with a codec or dtype that could run
        code or is not plain data (stores from elsewhere are not trusted: nothing is ever unpickled)."""
        try:
            array = self.group[name]
        except KeyError:
            raise StoreError(f"video {self.video_id!r} has no array {name!r}; it has {self.array_names()}") from None
        except (ValueError, TypeError) as exc:  # zarr's metadata and codec errors are ValueErrors
            raise StoreError(f"{self.video_id}/{name}: refused, unreadable metadata ({exc})") from exc
        if not isinstance(array, zarr.Array):
            raise StoreError(f"video {self.video_id!r}: {name!r} is a group, not an array")
        refused = refusal(f"{self.video_id}/{name}", {codec.to_dict()["name"] for codec in array.metadata.codecs},
                          str(array.dtype))
        if refused:
            raise StoreError(refused)
        return array

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` (default: all) of array ``name`` as a numpy array, read at the disk's speed from a
        local store (:func:`features_store.reading.read_rows`)."""
        return read_rows(self.array(name), start, stop)

    def dask(self, name: str):
        """Array ``name`` as a lazy dask array, one dask chunk per stored chunk (nothing read until computed)."""
        import dask.array as da

        return da.from_zarr(self.array(name))

    def write(self, name: str, data: np.ndarray, attrs: Mapping[str, Any], schema: ArraySchema | None = None) -> None:
        """Write (or replace) array ``name`` with JSON-serialisable ``attrs`` and its ``schema`` (by default, the one
        ``attrs`` describe: see :meth:`ArraySchema.from_attributes`)."""
        data = np.ascontiguousarray(data)
        self._create(name, data.shape, data.dtype, attrs, schema)[...] = data

    def write_blocks(self, name: str, shape: tuple[int, ...], dtype: np.dtype, blocks: Iterable[np.ndarray],
                     attrs: Mapping[str, Any], schema: ArraySchema | None = None) -> None:
        """Write (or replace) array ``name`` from consecutive row ``blocks`` of any sizes, one whole chunk at a
        time: memory holds at most a chunk plus a block, however long the array."""
        array = self._create(name, shape, np.dtype(dtype), attrs, schema)
        chunk = array.chunks[0]
        pending: list[np.ndarray] = []
        n_pending = written = 0
        for block in blocks:
            pending.append(block)
            n_pending += len(block)
            if n_pending >= chunk:
                rows = np.concatenate(pending)
                whole = len(rows) - len(rows) % chunk
                array[written:written + whole] = rows[:whole]
                written += whole
                pending, n_pending = [rows[whole:]], len(rows) - whole
        if n_pending:
            array[written:written + n_pending] = np.concatenate(pending)
            written += n_pending
        if written != shape[0]:
            raise StoreError(f"{self.video_id}/{name}: {written} rows were written, the array has {shape[0]}")

    def _create(self, name: str, shape: tuple[int, ...], dtype: np.dtype, attrs: Mapping[str, Any],
                schema: ArraySchema | None) -> zarr.Array:
        schema = schema or ArraySchema.from_attributes(name, attrs)
        problems = schema.problems(name, shape, dtype)
        if problems:
            raise StoreError(f"{self.video_id}/{name}: " + "; ".join(problems))
        return self.group.create_array(
            name, shape=shape, dtype=dtype, chunks=chunk_rows(shape, dtype.itemsize), compressors=None,
            attributes={**attrs, **schema.attributes(name)}, dimension_names=schema.dimension_names(name, len(shape)),
            overwrite=True, config={"write_empty_chunks": True})  # every chunk on disk: a missing one is damage

    def delete(self, name: str) -> None:
        """Remove array ``name`` (e.g. a feature computed from data that was since replaced)."""
        del self.group[name]

    def set_attribute(self, name: str, value: Any) -> None:
        """Set one JSON-serialisable group attribute (e.g. the ``words`` list)."""
        self.group.attrs[name] = value

    def set_complete(self, complete: bool) -> None:
        """The commit marker. ``True`` also records the ``manifest`` (each array's dtype and shape as committed)
        in the same metadata write, so :func:`~features_store.verify.verify_video` can tell a later loss or change
        of an array from the group as it was written."""
        if not complete:
            self.group.attrs["complete"] = False
            return
        manifest = {name: {"dtype": metadata["data_type"], "shape": metadata["shape"]}
                    for name, metadata in self.array_metadata().items()}
        self.group.attrs.update({"manifest": manifest, "complete": True})


class FeatureStore:
    """A store on a local path or fsspec URL. ``mode="r"`` reads; ``"a"`` creates it if needed and writes."""

    def __init__(self, location: str, mode: str = "r"):
        self.location = str(location)
        # file:// is a local path (zarr's LocalStore creates folders; its fsspec route does not)
        self._zarr_location = self.location.removeprefix("file://")
        try:
            # a new root is written with its format stamp in one (atomic) write: a killed run leaves no bare root
            self.root = zarr.open_group(self._zarr_location, mode=mode, use_consolidated=False,
                                        attributes=None if mode == "r" else {"format": STORE_FORMAT})
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise StoreError(f"{self.location}: no feature store there") from exc
        if mode != "r" and not self.root.attrs and not any(True for _ in self.root.members()):
            self.root.attrs["format"] = STORE_FORMAT  # stamp only a new, empty root, never a foreign store
        if self.root.attrs.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.location}: not an affectsync store (format attribute "
                             f"{self.root.attrs.get('format')!r}, expected {STORE_FORMAT!r})")
        self.writable = mode != "r"

    def _videos(self) -> zarr.Group | None:
        if VIDEOS_GROUP in self.root:
            return self.root[VIDEOS_GROUP]
        return self.root.create_group(VIDEOS_GROUP) if self.writable else None

    def video_ids(self) -> list[str]:
        videos = self._videos()
        return sorted(name for name, _ in videos.groups()) if videos is not None else []

    def complete_n_frames(self) -> dict[str, int]:
        """Video id -> T (frames) of every complete video (those a consumer may read), sorted by id."""
        return {video_id: int(metadata["attributes"]["n_frames"])
                for video_id, metadata in self.videos_metadata(arrays=False).items()
                if metadata["attributes"].get("complete") is True}

    def dask(self, name: str, video_ids: Sequence[str] | None = None):
        """Feature ``name`` of ``video_ids`` (default: every complete video that has it) as one lazy dask array,
        rows of the videos one after another in that order: for statistics over a whole store."""
        import dask.array as da

        if video_ids is None:
            video_ids = [v for v in self.complete_n_frames() if name in self.video(v).array_names()]
        if not video_ids:
            raise StoreError(f"{self.location}: no complete video has {name!r}")
        return da.concatenate([self.video(video_id).dask(name) for video_id in video_ids], axis=0)

    def videos_metadata(self, arrays: bool = True) -> dict[str, dict[str, Any]]:
        """Video id -> ``{"attributes": its group's attributes, "arrays": {name: zarr.json}}`` (``arrays``: False
        leaves them out), sorted by id: every video's metadata read in one concurrent pass (``info`` on Aff-Wild2's
        548 videos takes seconds, not one zarr call after another)."""
        videos = self._videos()
        if videos is None:
            return {}
        groups = {name: metadata for name, metadata in _child_metadata(videos).items()
                  if metadata.get("node_type") == "group"}
        video_ids = sorted(groups)
        children = (_children_metadata(videos.store, [f"{videos.path}/{vid}/" for vid in video_ids]) if arrays
                    else [{} for _ in video_ids])
        return {vid: {"attributes": groups[vid].get("attributes") or {},
                      "arrays": {name: metadata for name, metadata in sorted(found.items())
                                 if metadata.get("node_type") == "array"}}
                for vid, found in zip(video_ids, children)}

    def __contains__(self, video_id: str) -> bool:
        videos = self._videos()
        return videos is not None and video_id in videos

    def video(self, video_id: str) -> VideoGroup:
        if video_id not in self:
            raise StoreError(f"{self.location}: no video {video_id!r}")
        return VideoGroup(self._videos()[video_id], video_id)

    def create_video(self, video_id: str, attrs: Mapping[str, Any]) -> VideoGroup:
        """A new, empty group for ``video_id`` marked incomplete (``complete`` false until :meth:`set_complete`)."""
        group = self._videos().create_group(video_id, attributes={**attrs, "complete": False})
        return VideoGroup(group, video_id)

    def delete_video(self, video_id: str) -> None:
        del self._videos()[video_id]

    @cached_property
    def claims(self):
        """This process's claims on the store's video groups and root (:mod:`features_store.claims`)."""
        from features_store.claims import Claims

        return Claims(self.root.store)

    @contextlib.contextmanager
    def updating_root(self) -> Iterator[None]:
        """Hold the root claim and re-read the root, so that root attributes written inside (``failures``,
        consolidated metadata) start from what other writers stored, not from this process's old copy."""
        from features_store.claims import ROOT_CLAIM

        if self.claims.holds(ROOT_CLAIM):  # already inside (e.g. consolidating while recording failures)
            yield
            return
        with self.claims.holding(ROOT_CLAIM):
            self.root = zarr.open_group(self._zarr_location, mode="r+", use_consolidated=False)
            yield

    def begin_writing(self, started_utc: str) -> None:
        """Mark a write run's start; this rewrites the root metadata, dropping any consolidated copy (stale now)."""
        with self.updating_root():
            self.root.attrs["last_write_started_utc"] = started_utc
            self._videos()  # created here, once, not raced by writers' first videos
            self._remove_interrupted_writes()

    def _remove_interrupted_writes(self) -> None:
        """Delete the temporary files (``*.partial``) of metadata writes that a killed writer left at the root or in
        ``videos/`` (zarr would warn about them on every listing); those under a video go with its partial group.
        Only files older than a minute: a live writer's own temporary file lasts milliseconds."""
        if not isinstance(self.root.store, zarr.storage.LocalStore):
            return
        root = Path(str(self.root.store.root))
        for leftover in [*root.glob("*.partial"), *(root / VIDEOS_GROUP).glob("*.partial")]:
            with contextlib.suppress(OSError):
                if time.time() - leftover.stat().st_mtime > INTERRUPTED_WRITE_AGE_S:
                    leftover.unlink()

    def failures(self) -> list[dict[str, Any]]:
        """The root attribute ``failures``: ``{"video_id", "source", "reason"}`` of each video whose last
        extraction failed (empty when none did)."""
        return list(self.root.attrs.get("failures") or [])

    def record_failures(self, failures: list[dict[str, Any]]) -> None:
        """Replace the root attribute ``failures`` (inside :meth:`updating_root` when other writers may run)."""
        self.root.attrs["failures"] = failures

    def consolidate(self) -> None:
        """Write consolidated metadata for remote readers (at the end of a run, holding the root claim)."""
        with self.updating_root(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr warns that consolidation is not yet in the v3 spec
            zarr.consolidate_metadata(self._zarr_location)
