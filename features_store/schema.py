"""What an array holds and along which axes: the typed form of the attributes extractors write and ``verify`` reads.

Every array of a video group has a first axis on a clock: ``frame`` (one row per decoded frame, shared by every
per-frame array) or an axis of its own, named after the array holding its row times (``mel64``, ``mel64_valid`` and
``mel64_time`` share ``mel64_time``). Its other axes are named ``<array>_<axis>`` (``logmel_column``,
``face_crop_y``, ``face_crop_x``, ``face_crop_channel``). The names are Zarr v3 ``dimension_names``, so
``xarray.open_zarr(store, group="videos/<id>")`` opens a video as a Dataset.

An array is one of four kinds: ``feature`` (values), ``validity`` (bool: rows of the features tied to it that hold
data; the others are zeros), ``time`` (seconds: the row times of a clock) or ``index`` (integers: rows of another
array, or items of a list attribute of the group). The attributes stay plain JSON, as stores written before this
schema have them (``per_frame``, ``time_axis``, ``validity``, ``indexes``, ``indexes_attribute``, ``units``,
``columns``, ``description``) plus ``kind``; :meth:`ArraySchema.from_attributes` reads both, telling the kind of an
older array by its name (``_valid``, ``_time``) as those stores did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

FRAME = "frame"
"""The dimension of every per-frame array's rows."""

Kind = Literal["feature", "validity", "time", "index"]
KINDS: tuple[str, ...] = ("feature", "validity", "time", "index")
DEFAULT_AXES = {2: ("column",)}
"""Names of the axes after the first when an array does not say: a (rows, D) array's columns."""


@dataclass(frozen=True)
class ArraySchema:
    """The typed description of one array (see the module docstring).

    ``clock``: :data:`FRAME`, or the name of the ``time`` array of the array's own clock (an own-clock ``time`` array
    names itself). ``axes``: names of the axes after the first (default: ``column`` for 2-D arrays, ``axis<k>``
    beyond). ``columns``: a name per entry of the last axis. ``validity``: the validity array whose False rows are
    zeros here. ``indexes`` / ``indexes_attribute``: what an ``index`` array points into. ``units``: of the values
    (seconds for ``time`` arrays). ``description``: one line for people.
    """

    kind: Kind = "feature"
    clock: str = FRAME
    axes: tuple[str, ...] | None = None
    units: str | None = None
    columns: tuple[str, ...] | None = None
    validity: str | None = None
    indexes: str | None = None
    indexes_attribute: str | None = None
    description: str | None = None

    @property
    def per_frame(self) -> bool:
        return self.clock == FRAME

    def dimension_names(self, name: str, ndim: int) -> tuple[str, ...]:
        """The array's Zarr ``dimension_names``: its clock, then ``<name>_<axis>`` for each further axis."""
        axes = self.axes if self.axes is not None else DEFAULT_AXES.get(ndim, tuple(f"axis{k}" for k in range(1, ndim)))
        return (self.clock, *(f"{name}_{axis}" for axis in axes))[:ndim]

    def attributes(self, name: str) -> dict[str, Any]:
        """The schema as the array's JSON attributes (``time_axis`` names the clock of an own-clock array)."""
        attrs: dict[str, Any] = {"kind": self.kind, "per_frame": self.per_frame}
        if not self.per_frame and self.clock != name:
            attrs["time_axis"] = self.clock
        for key in ("units", "validity", "indexes", "indexes_attribute", "description"):
            if getattr(self, key) is not None:
                attrs[key] = getattr(self, key)
        if self.columns is not None:
            attrs["columns"] = list(self.columns)
        if self.axes is not None:
            attrs["axes"] = list(self.axes)
        return attrs

    @classmethod
    def from_attributes(cls, name: str, attrs: Mapping[str, Any]) -> ArraySchema:
        """The schema of array ``name`` from its attributes, those of stores written before the schema included:
        their kind is told by the name, prose ``columns`` are not names (left out)."""
        kind = attrs.get("kind")
        if kind not in KINDS:
            kind = ("validity" if name.endswith("_valid") else "time" if name.endswith("_time")
                    else "index" if attrs.get("indexes") or attrs.get("indexes_attribute") else "feature")
        clock = FRAME if attrs.get("per_frame") else attrs.get("time_axis") or (name if kind == "time" else FRAME)
        columns = attrs.get("columns")
        axes = attrs.get("axes")
        return cls(kind=kind, clock=clock, axes=tuple(axes) if isinstance(axes, list) else None,
                   units=attrs.get("units"), validity=attrs.get("validity"), indexes=attrs.get("indexes"),
                   indexes_attribute=attrs.get("indexes_attribute"), description=attrs.get("description"),
                   columns=tuple(columns) if isinstance(columns, list) else None)

    @classmethod
    def from_array(cls, name: str, array) -> ArraySchema:
        """The schema of a stored zarr array ``name`` (its attributes; the names of its further axes from its
        ``dimension_names`` when it has them)."""
        schema = cls.from_attributes(name, dict(array.attrs))
        stored = getattr(array.metadata, "dimension_names", None)
        prefix = f"{name}_"
        if schema.axes is None and stored and all(isinstance(d, str) and d.startswith(prefix) for d in stored[1:]):
            schema = dataclasses.replace(schema, axes=tuple(d[len(prefix):] for d in stored[1:]))
        return schema

    def problems(self, name: str, shape: Sequence[int], dtype: np.dtype,
                 dimension_names: Sequence[str | None] | None = None) -> list[str]:
        """What does not fit: the dtype of the kind, the number of columns, the dimension names (when stored)."""
        dtype = np.dtype(dtype)
        found = []
        if self.kind == "validity" and dtype != np.bool_:
            found.append(f"dtype {dtype}, expected bool (a validity array)")
        if self.kind == "index" and dtype.kind not in "iu":
            found.append(f"dtype {dtype}, expected integers (it holds indices)")
        if self.kind == "time" and (dtype.kind != "f" or len(shape) != 1):
            found.append(f"{dtype} {tuple(shape)}, expected one float per row (a time axis)")
        if self.columns is not None and (len(shape) < 2 or len(self.columns) != shape[-1]):
            found.append(f"{len(self.columns)} column names for shape {tuple(shape)}")
        if dimension_names is not None and tuple(dimension_names) != self.dimension_names(name, len(shape)):
            found.append(f"dimension names {list(dimension_names)}, expected "
                         f"{list(self.dimension_names(name, len(shape)))}")
        return found


def column_names(prefix: str, count: int) -> tuple[str, ...]:
    """``prefix0`` .. ``prefix<count-1>``: names for columns that are numbered bands or units."""
    return tuple(f"{prefix}{k}" for k in range(count))
