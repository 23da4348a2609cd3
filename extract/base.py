"""The extractor contract: a named class with a frozen config dataclass, a version, and provenance.

Modelled on lhotse's feature extractors (config dataclass + registry) and torchaudio's pipelines. An extractor turns a
:class:`~extract.ingest.DecodedVideo` into named arrays; the batch runner writes them to the store together with
:meth:`Extractor.provenance`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from extract.ingest import DecodedVideo
from extract.weights import WeightsBundle, models_search_path
from features_store.common import library_versions
from features_store.schema import ArraySchema


STORAGE_DTYPES = ("float32", "float16")
"""What ``--set FEATURE.dtype=...`` may choose for a feature's stored values."""


@dataclass(frozen=True)
class RowBlocks:
    """An array too large to hold whole (face crops of an hour of video): its shape and dtype, and its rows as
    consecutive blocks, computed while the store writes them chunk by chunk. ``blocks`` is consumed once, when the
    runner writes it, in the order :meth:`Extractor.extract` returned the arrays: an array after it may hold what
    its pass computed."""

    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Iterable[np.ndarray]


@dataclass(frozen=True)
class FeatureArray:
    """One array an extractor produces: its data, its :class:`~features_store.schema.ArraySchema` (kind, clock,
    axes, units, column names, validity, what it indexes) and other attributes worth seeing at a glance (window
    placement, sizes, rates).

    Arrays on the ``frame`` clock have exactly T rows (one per decoded frame); others are on a clock of their own.
    ``data`` is an array, or :class:`RowBlocks` for arrays written as they are computed.
    """

    data: np.ndarray | RowBlocks
    schema: ArraySchema = ArraySchema()
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def per_frame(self) -> bool:
        return self.schema.per_frame


@dataclass(frozen=True)
class VideoAttribute:
    """A JSON value an extractor stores as an attribute of the video's group (e.g. the ``words`` list), for data
    that is not an array; the extractor's arrays carry its provenance."""

    value: Any


class Extractor(ABC):
    """Base class of every extractor.

    Subclasses set ``name`` (the feature name used in ``--features``), ``version`` (bump it when outputs change),
    ``config_class`` (a frozen dataclass of parameters), ``libraries`` (distributions whose versions go into the
    provenance) and ``offline`` (True when it runs with nothing but the installed wheels).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    config_class: ClassVar[type]
    libraries: ClassVar[tuple[str, ...]] = ("numpy",)
    offline: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ()
    """Features whose stored arrays this one is computed from (run first, then handed over as ``inputs``)."""
    storage_dtype: str = "float32"
    """How the feature's own floating-point array is stored (one of :data:`STORAGE_DTYPES`; ``--set
    FEATURE.dtype=float16`` halves its bytes, see the README for its measured error); geometry, indices and validity
    are never narrowed."""
    video_attributes: ClassVar[tuple[str, ...]] = ()
    """Names of the group attributes :meth:`extract` returns as :class:`VideoAttribute` (handed to dependants as
    ``inputs`` too)."""

    @property
    def primary_array(self) -> str:
        """The array whose presence and provenance say this feature is stored (its name, unless overridden)."""
        return self.name

    def __init__(self, config: Any | None = None, models_dir: str | Path | None = None):
        self.config = config if config is not None else self.config_class()
        self.models_search_path = models_search_path(models_dir)
        """Folders searched for user weights (``--models DIR``, ``$AFFECTSYNC_MODELS``, ``models/``)."""

    @abstractmethod
    def extract(self, video: DecodedVideo,
                inputs: Mapping[str, Any] | None = None) -> dict[str, FeatureArray | VideoAttribute]:
        """Compute this extractor's arrays for one decoded video, keyed by array name (the first is
        :attr:`primary_array`), plus any group attributes it declares in ``video_attributes``.

        ``inputs`` holds the stored arrays of the features named in ``requires`` (zarr arrays: read them in chunks),
        their validity arrays and the group attributes they wrote, when the extractor builds on their output.
        """

    def validity(self, video: DecodedVideo) -> dict[str, FeatureArray]:
        """The validity arrays of this extractor's modality (e.g. ``audio_valid``), shared by its features."""
        return {}

    def weights(self) -> dict[str, WeightsBundle]:
        """The weights files this extractor loads, by role (e.g. ``{"model": ...}``); empty without a model."""
        return {}

    def check_weights(self) -> None:
        """Resolve every weights file now: :class:`~extract.weights.WeightsError` names a missing one and where to
        put it, before any video is touched."""
        for bundle in self.weights().values():
            bundle.path(self.models_search_path)

    def weights_provenance(self) -> dict[str, Any] | None:
        """The model weights used (file, sha256, source, license), by role when there are several; None without
        a model."""
        provenance = {role: bundle.provenance(self.models_search_path) for role, bundle in self.weights().items()}
        if len(provenance) == 1:
            return next(iter(provenance.values()))
        return provenance or None

    def parameters(self) -> dict[str, Any]:
        """The config's fields, and ``dtype`` when the feature is stored narrower than float32."""
        narrowed = {"dtype": self.storage_dtype} if self.storage_dtype != "float32" else {}
        return {**dataclasses.asdict(self.config), **narrowed}

    def stored(self, name: str, array: FeatureArray) -> FeatureArray:
        """``array`` as the store keeps it: the primary floating-point array cast to :attr:`storage_dtype`."""
        data = array.data
        if name != self.primary_array or self.storage_dtype == "float32" or np.dtype(data.dtype).kind != "f":
            return array
        dtype = np.dtype(self.storage_dtype)

        def narrow(values: np.ndarray) -> np.ndarray:
            largest = float(np.nanmax(np.abs(values), initial=0.0))
            if largest > np.finfo(dtype).max:
                raise ValueError(f"{name}: values up to {largest:.6g} exceed {dtype}'s range; store it as float32 "
                                 f"(drop --set {self.name}.dtype={dtype})")
            return values.astype(dtype)
        if isinstance(data, RowBlocks):
            return dataclasses.replace(array, data=RowBlocks(data.shape, dtype, map(narrow, data.blocks)))
        return dataclasses.replace(array, data=narrow(data))

    def provenance(self) -> dict[str, Any]:
        """What produced the arrays: extractor, version, parameters, weights and library versions (JSON-ready)."""
        return {
            "extractor": type(self).__name__,
            "feature": self.name,
            "version": self.version,
            "parameters": self.parameters(),
            "weights": self.weights_provenance(),
            "requires": list(self.requires),
            "libraries": library_versions("affectsync", *self.libraries),
        }
