"""A store as one flat table, one row per frame: Parquet for the pandas / Polars / R / SQL world, or a DataFrame.

Columns, in this order: ``video_id``, ``frame`` (its index, int64), ``time_s`` (``frame_time``, float64), the validity
arrays the chosen features are tied to (``face_valid``, ``audio_valid``, ``word_valid``, ... bool), then each
feature's columns named ``<feature>_<column>``: the names in the array's ``columns`` attribute when it has one per
column, else ``0..D-1`` (``bert_0`` .. ``bert_383``); a (T,) feature is one column named after it (``face_score``);
arrays with more axes are flattened in C order, one name part per axis (``landmarks68_<point>_<x|y>``:
``landmarks68_0_x``, ``landmarks68_0_y``, ``landmarks68_1_x``, ...). Every column keeps its stored dtype (float32
stays float32, bool stays bool). Invalid rows are zeros, as in the store; the validity columns say which.

Only per-frame arrays fit in such a table. Images (arrays with ``y`` and ``x`` axes: ``face_crop``, ``face_mask``)
are refused when named and left out of the default (every per-frame feature array, ``kind`` ``feature``, the videos
share); arrays on their own clock (``mel64``) are refused: their ``_row`` index arrays (``mel64_row``) may be named.

The Parquet file is written a row group at a time (each video in blocks of ``rows_per_group`` frames; a group never
spans two videos), so memory holds one block whatever the store's size. Its schema metadata (key ``affectsync``,
JSON) names the store, the videos and, per feature, its columns, validity, units and recipes (provenance without
``created_utc``, with the videos made by each). Needs pyarrow (``pip install affectsync[tables]``); :func:`to_dataframe`
needs pandas only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features_store.reading import read_rows
from features_store.recipes import recipe
from features_store.schema import ArraySchema
from features_store.store import FeatureStore, StoreError, VideoGroup

TABLE_FORMAT = "affectsync-table/1"
DEFAULT_ROWS_PER_GROUP = 4096
"""Frames per Parquet row group (and per block read from the store)."""
FIXED_COLUMNS = ("video_id", "frame", "time_s")
IMAGE_AXES = frozenset({"y", "x"})
"""An array whose axes include both is an image per frame (``face_crop``, ``face_mask``): not a table's business."""


class TableError(StoreError):
    """A table that cannot be made: an unknown video or feature, an image or own-clock array, clashing names."""


@dataclass
class TablePlan:
    """What a table holds: the videos (id -> T), the feature arrays and their column names, the validity arrays."""

    video_ids: dict[str, int]
    features: dict[str, list[str]]
    """Feature array -> its column names in the table, in order."""
    validity: list[str]
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    """Every array of the plan (features and validity) -> its dtype."""
    about: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Feature -> columns, validity, units, description and recipes (the table's metadata)."""

    @property
    def columns(self) -> list[str]:
        return [*FIXED_COLUMNS, *self.validity, *(name for names in self.features.values() for name in names)]

    @property
    def n_rows(self) -> int:
        return sum(self.video_ids.values())


def image_like(schema: ArraySchema) -> bool:
    """True for an image per frame (axes ``y`` and ``x``, e.g. ``face_crop`` (T, 112, 112, 3))."""
    return schema.axes is not None and IMAGE_AXES <= set(schema.axes)


def column_names(name: str, shape: Sequence[int], schema: ArraySchema) -> list[str]:
    """The table columns of per-frame array ``name`` of ``shape`` (T, ...): ``name`` for a (T,) array, else
    ``<name>_<column>`` with one part per axis after the first (see the module docstring)."""
    if len(shape) == 1:
        return [name]
    last = shape[-1]
    last_names = ([str(c) for c in schema.columns] if schema.columns is not None and len(schema.columns) == last
                  else [str(k) for k in range(last)])
    leading = ["_".join(map(str, index)) for index in np.ndindex(*shape[1:-1])] if len(shape) > 2 else [""]
    return [f"{name}_{lead}_{column}" if lead else f"{name}_{column}" for lead in leading for column in last_names]


def _default_features(video: VideoGroup) -> list[str]:
    """The per-frame, non-image arrays of kind ``feature`` of one video."""
    found = []
    for name in video.array_names():
        schema = ArraySchema.from_array(name, video.array(name))
        if schema.kind == "feature" and schema.per_frame and not image_like(schema):
            found.append(name)
    return found


def plan_table(store: FeatureStore, video_ids: Sequence[str] | None = None,
               features: Sequence[str] | None = None) -> TablePlan:
    """Check a table before anything is read: ``video_ids`` (default: every complete video) must be complete and
    hold every one of ``features`` (default: the per-frame, non-image feature arrays every chosen video has) with the
    same trailing shape; a :class:`TableError` names the video and array otherwise."""
    complete = store.complete_n_frames()
    if video_ids is None:
        video_ids = list(complete)
        if not video_ids:
            raise TableError(f"{store.location}: no complete video to export")
    for video_id in video_ids:
        if video_id not in store:
            raise TableError(f"{store.location}: no video {video_id!r} (it has {', '.join(store.video_ids())})")
        if video_id not in complete:
            raise TableError(f"{store.location}: video {video_id!r} is not complete (a partial extraction); finish "
                             "or redo it first")
    if len(set(video_ids)) != len(video_ids):
        raise TableError(f"videos named twice: {', '.join(sorted({v for v in video_ids if video_ids.count(v) > 1}))}")
    groups = {video_id: store.video(video_id) for video_id in video_ids}
    if features is not None:
        features = list(dict.fromkeys(features))
    else:
        shared = [set(_default_features(group)) for group in groups.values()]
        features = sorted(set.intersection(*shared))
        if not features:
            raise TableError(f"{store.location}: the chosen videos share no per-frame feature array")
    plan = TablePlan(video_ids={video_id: complete[video_id] for video_id in video_ids}, features={}, validity=[])
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    recipes: dict[str, list[dict[str, Any]]] = {}
    for video_id, group in groups.items():
        names = set(group.array_names())
        for name in features:
            if name not in names:
                raise TableError(f"{store.location}: video {video_id!r} has no array {name!r}")
            array = group.array(name)
            schema = ArraySchema.from_array(name, array)
            _check_tabular(name, array.shape, schema)
            shape = (tuple(array.shape[1:]), str(array.dtype))
            if shapes.setdefault(name, shape) != shape:
                first = next(iter(groups))
                raise TableError(f"{name}: {shapes[name][1]} rows of shape {shapes[name][0]} in video {first!r} but "
                                 f"{shape[1]} {shape[0]} in {video_id!r}; a table needs the same columns in every row")
            if schema.kind == "validity":
                if name not in plan.validity:
                    plan.validity.append(name)
                continue
            if schema.validity is not None and schema.validity not in plan.validity:
                plan.validity.append(schema.validity)
            plan.dtypes[name] = np.dtype(array.dtype)
            if name not in plan.features:
                plan.features[name] = column_names(name, array.shape, schema)
                plan.about[name] = {"columns": plan.features[name], "validity": schema.validity,
                                    "units": schema.units, "description": schema.description, "recipes": []}
            _add_recipe(recipes.setdefault(name, []), recipe(array.attrs.get("provenance")), video_id)
    for name in plan.validity:
        for video_id, group in groups.items():
            if name not in group.array_names():
                raise TableError(f"{store.location}: video {video_id!r} has no validity array {name!r}")
        plan.dtypes[name] = np.dtype(np.bool_)
    for name, found in recipes.items():
        plan.about[name]["recipes"] = found
    _check_unique(plan)
    return plan


def _check_tabular(name: str, shape: Sequence[int], schema: ArraySchema) -> None:
    if schema.kind == "time":
        raise TableError(f"{name}: a time axis; the table's time_s column is frame_time")
    if not schema.per_frame:
        raise TableError(f"{name}: on its own clock ({schema.clock}, {shape[0]} rows), not one row per frame; "
                         f"tables hold per-frame arrays (its per-frame row index, if any, is {name}_row)")
    if image_like(schema):
        raise TableError(f"{name}: an image per frame ({'x'.join(map(str, shape[1:]))} = {math.prod(shape[1:])} "
                         f"values), not a table column set; read it with store.video(id).read({name!r})")


def _add_recipe(found: list[dict[str, Any]], made_by: dict[str, Any], video_id: str) -> None:
    for entry in found:
        if entry["recipe"] == made_by:
            entry["videos"].append(video_id)
            return
    found.append({"recipe": made_by, "videos": [video_id]})


def _check_unique(plan: TablePlan) -> None:
    seen: dict[str, str] = {name: "a fixed column" for name in FIXED_COLUMNS}
    seen.update({name: "a validity column" for name in plan.validity})
    for feature, names in plan.features.items():
        for name in names:
            if name in seen:
                raise TableError(f"column {name!r} of {feature!r} clashes with {seen[name]}; export the two "
                                 "separately (--features)")
            seen[name] = f"a column of {feature!r}"


def video_blocks(store: FeatureStore, plan: TablePlan, video_id: str,
                 rows_per_block: int = DEFAULT_ROWS_PER_GROUP) -> Iterator[dict[str, np.ndarray]]:
    """The table rows of one video, ``rows_per_block`` frames at a time: column name -> 1-D array (in
    :attr:`TablePlan.columns` order; ``video_id`` as an object array of str)."""
    group = store.video(video_id)
    n_frames = plan.video_ids[video_id]
    arrays = {name: group.array(name) for name in [*plan.validity, *plan.features]}
    for start in range(0, n_frames, rows_per_block):
        stop = min(start + rows_per_block, n_frames)
        block: dict[str, np.ndarray] = {
            "video_id": np.full(stop - start, video_id, dtype=object),
            "frame": np.arange(start, stop, dtype=np.int64),
            "time_s": group.read("frame_time", start, stop).astype(np.float64, copy=False)}
        for name in plan.validity:
            block[name] = read_rows(arrays[name], start, stop).astype(np.bool_, copy=False)
        for name, names in plan.features.items():
            rows = read_rows(arrays[name], start, stop).reshape(stop - start, -1)
            if rows.shape[1] == 1 and len(names) == 1 and arrays[name].ndim == 1:
                block[names[0]] = rows[:, 0]
                continue
            by_column = np.ascontiguousarray(rows.T)  # one contiguous run per column
            for k, column in enumerate(names):
                block[column] = by_column[k]
        yield block


def _metadata(store: FeatureStore, plan: TablePlan) -> str:
    return json.dumps({"format": TABLE_FORMAT, "store": store.location, "videos": plan.video_ids,
                       "validity": plan.validity, "features": plan.about})


def export_table(store: FeatureStore, out: str | Path, features: Sequence[str] | None = None,
                 video_ids: Sequence[str] | None = None,
                 rows_per_group: int = DEFAULT_ROWS_PER_GROUP) -> tuple[TablePlan, int]:
    """Write the table of ``video_ids`` x ``features`` (defaults: see :func:`plan_table`) to the Parquet file
    ``out``, one row group per ``rows_per_group`` frames of a video. Written beside ``out`` and renamed at the end,
    so a failed export leaves no half file. Returns the plan and the number of row groups written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TableError("export-table needs pyarrow: pip install pyarrow (or affectsync[tables])") from None
    if rows_per_group < 1:
        raise TableError(f"rows per group must be at least 1, got {rows_per_group}")
    plan = plan_table(store, video_ids, features)
    fields = [pa.field("video_id", pa.string()), pa.field("frame", pa.int64()), pa.field("time_s", pa.float64())]
    for name in plan.validity:
        fields.append(pa.field(name, pa.bool_()))
    for name, names in plan.features.items():
        fields += [pa.field(column, pa.from_numpy_dtype(plan.dtypes[name])) for column in names]
    schema = pa.schema(fields, metadata={"affectsync": _metadata(store, plan)})
    out = Path(out)
    if not out.parent.is_dir() or out.is_dir():
        raise TableError(f"{out}: {'a folder' if out.is_dir() else f'its folder {out.parent} does not exist'}; "
                         "give a .parquet file to write")
    partial = out.with_name(out.name + ".partial")
    n_groups = 0
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for video_id in plan.video_ids:
                for block in video_blocks(store, plan, video_id, rows_per_group):
                    table = pa.Table.from_arrays([pa.array(values, type=schema.field(column).type)
                                                  for column, values in block.items()], schema=schema)
                    writer.write_table(table, row_group_size=table.num_rows)
                    n_groups += 1
        os.replace(partial, out)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, a folder without write permission: one line, naming the file
            raise TableError(f"{out}: cannot write it ({exc.strerror or exc})") from exc
        raise
    return plan, n_groups


def to_dataframe(store: FeatureStore | str, video_id: str, features: Sequence[str] | None = None):
    """The table rows of one video (the columns and dtypes :func:`export_table` writes) as a pandas DataFrame,
    index 0..T-1. ``features``: as in :func:`plan_table` (default: the video's per-frame, non-image features)."""
    try:
        import pandas as pd
    except ImportError:
        raise TableError("to_dataframe needs pandas: pip install pandas") from None
    if not isinstance(store, FeatureStore):
        store = FeatureStore(str(store))
    plan = plan_table(store, [video_id], features)
    (block,) = video_blocks(store, plan, video_id, rows_per_block=max(plan.video_ids[video_id], 1))
    columns = {name: pd.Series(values, dtype="str" if name == "video_id" else values.dtype, copy=False)
               for name, values in block.items()}
    return pd.DataFrame(columns, columns=plan.columns)
