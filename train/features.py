"""Selected features of a store, grouped by modality, standardised, ready to cut into windows.

A feature's modality is named by its validity array (``audio_valid`` -> ``audio``, ``face_valid`` -> ``face``,
``word_valid`` -> ``word``); features of one modality are concatenated column-wise, in the order given, so fusion models
see one input per modality (or one input per feature, ``group_by="feature"``, for models that route features,
M3T's 3D VGG). Per-frame vector features (T, D) are standardised here; the trunk networks' inputs (face clips and
sub-spectrograms cut from ``face_crop``, ``face_mask``, ``mel64``, ``mel64_fine``) come from :mod:`train.clips`.

Data loading must never be what a training step waits for: when the selected features fit comfortably in RAM they are
read once, standardised once and sliced from memory; otherwise each window is read from the store chunk-wise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from pathlib import Path

import numpy as np
import psutil

from features_store import FeatureStore, StoreError
from features_store.common import family_array_name
from features_store.errors import AffectsyncError
from features_store.reading import page_aligned_empty, read_rows
from features_store.recipes import differing_keys, recipe
from train.clips import TRUNK_FEATURES, ClipSpec, StoreClips

LOG = logging.getLogger("affectsync.train")

RAM_FRACTION = 0.5
"""Features are held in RAM when raw plus standardised copies take at most this fraction of the available memory."""


class FeatureError(AffectsyncError, ValueError):
    """A requested feature is missing from a video or cannot be trained on."""


def modality_of(attrs: Mapping) -> str:
    """The modality of a stored feature: its validity array's name without ``_valid`` (else ``other``)."""
    validity = attrs.get("validity")
    return validity[: -len("_valid")] if isinstance(validity, str) and validity.endswith("_valid") else "other"


@dataclass
class Standardiser:
    """Per-column mean and standard deviation of each modality, fitted on training frames only."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    def apply(self, modality: str, rows: np.ndarray, valid: np.ndarray | None = None,
              in_place: bool = False) -> np.ndarray:
        """(rows - mean) / std as float32; rows whose modality is invalid stay zeros. ``in_place``: overwrite
        ``rows`` (float32, the caller's own copy) instead of allocating."""
        out = rows if in_place else np.array(rows, dtype=np.float32)
        out -= self.mean[modality]
        out /= self.std[modality]
        if valid is not None and not valid.all():
            out[~valid] = 0.0
        return out

    def save(self, path: Path) -> None:
        arrays = {f"{m}.mean": v for m, v in self.mean.items()} | {f"{m}.std": v for m, v in self.std.items()}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Standardiser:
        with np.load(path, allow_pickle=False) as data:
            mean = {k[: -len(".mean")]: data[k] for k in data.files if k.endswith(".mean")}
            std = {k[: -len(".std")]: data[k] for k in data.files if k.endswith(".std")}
        return cls(mean, std)


class StoreFeatures:
    """The chosen ``features`` of ``video_ids`` in a store, per modality, in RAM or read per window.

    ``modalities`` maps modality -> its feature names; ``modality_dims`` modality -> concatenated width;
    ``n_frames`` video id -> T. :meth:`rows` returns standardised float32 rows once :attr:`standardiser` is set.
    """

    def __init__(self, store: FeatureStore, features: Sequence[str], video_ids: Sequence[str],
                 in_memory: bool | None = None, clips: ClipSpec | None = None,
                 group_by: Literal["modality", "feature"] = "modality"):
        if not features:
            raise FeatureError("no features selected (FEATURES=a,b,...)")
        if not video_ids:
            raise FeatureError(f"{store.location}: no complete video to read features from")
        self.store = store
        self.features = list(features)
        self.video_ids = list(video_ids)
        self.group_by = group_by
        self.n_frames = {vid: store.video(vid).n_frames for vid in self.video_ids}
        trunk_features = [name for name in self.features if name in TRUNK_FEATURES]
        if trunk_features and clips is None:
            raise FeatureError(f"{', '.join(trunk_features)}: clip and spectrogram inputs of the trunk networks; "
                               "choose a trunk model (MODEL=tsav, m3t_3dvgg, tdnn_transformer or frame_cnn) or "
                               "per-frame features")
        self.vector_features = [name for name in self.features if name not in TRUNK_FEATURES]
        self.clips = StoreClips(store, trunk_features, self.video_ids, clips) if trunk_features else None
        """The trunk inputs (None when only vector features are selected)."""
        self._arrays = {vid: self._open_arrays(vid) for vid in self.video_ids}
        self.modalities, self.modality_dims, self.validity = self._describe()
        self.recipes = self._recipes()
        """Feature -> the recipe it was extracted with (the same in every video, or a FeatureError)."""
        self.standardiser: Standardiser | None = None
        n_bytes = sum(self.n_frames.values()) * sum(self.modality_dims.values()) * 4
        budget = RAM_FRACTION * psutil.virtual_memory().available
        # raw rows are kept beside the standardised ones so that each fold can refit its own statistics
        self.in_memory = 2 * n_bytes <= budget if in_memory is None else in_memory
        LOG.info("features %s: %.1f MB for %d videos, %s%s", self.vector_features, n_bytes / 1e6,
                 len(self.video_ids), "held in RAM" if self.in_memory else "read per window",
                 f"; {', '.join(self.clips.input_shapes)} cut per window from {', '.join(self.clips.features)}"
                 if self.clips else "")
        self._raw: dict[str, dict[str, np.ndarray]] = {}
        self._normalised: dict[str, dict[str, np.ndarray]] = {}
        self._valid: dict[str, dict[str, np.ndarray]] = {}
        if self.in_memory:
            for vid in self.video_ids:
                self._raw[vid] = {m: self._read(vid, m) for m in self.modalities}

    def reopen(self) -> None:
        """Open the store and every array read per window anew (in a DataLoader worker, after the fork)."""
        self.store = FeatureStore(self.store.location)
        self._arrays = {vid: self._open_arrays(vid) for vid in self.video_ids}
        if self.clips is not None:
            self.clips = StoreClips(self.store, self.clips.features, self.video_ids, self.clips.spec)

    def _open_arrays(self, video_id: str) -> dict:
        """The video's feature arrays (zarr handles, opened once), checked: complete, present, per-frame, T rows."""
        video = self.store.video(video_id)
        if not video.complete:
            raise FeatureError(f"{self.store.location}: video {video_id!r} is not complete; re-run extraction")
        arrays = {}
        for feature in self.vector_features:
            try:
                array = video.array(feature)
            except StoreError as exc:
                family, colon, member = feature.partition(":")
                hint = (f"features are read by their stored names: {family_array_name(family, member)}" if colon
                        else f"extract it with --features {feature}")
                raise FeatureError(f"{self.store.location}: video {video_id!r} has no feature {feature!r} "
                                   f"({hint})") from exc
            if not array.attrs.get("per_frame") or array.ndim != 2:
                raise FeatureError(f"feature {feature!r} is not a per-frame (T, D) array (shape {array.shape}); "
                                   f"only per-frame features can be trained on")
            if array.shape[0] != self.n_frames[video_id]:
                raise FeatureError(f"{self.store.location}: video {video_id!r}: {feature!r} has {array.shape[0]} "
                                   f"rows, expected T={self.n_frames[video_id]} (run python -m features_store verify)")
            arrays[feature] = array
        return arrays

    def _describe(self) -> tuple[dict[str, list[str]], dict[str, int], dict[str, str | None]]:
        modalities: dict[str, list[str]] = {}
        dims: dict[str, int] = {}
        validity: dict[str, str | None] = {}
        for feature in self.vector_features:
            widths = {arrays[feature].shape[1] for arrays in self._arrays.values()}
            if len(widths) > 1:
                raise FeatureError(f"feature {feature!r} has different widths across videos: {sorted(widths)}")
            attrs = dict(self._arrays[self.video_ids[0]][feature].attrs)
            modality = feature if self.group_by == "feature" else modality_of(attrs)
            modalities.setdefault(modality, []).append(feature)
            dims[modality] = dims.get(modality, 0) + widths.pop()
            validity[modality] = attrs.get("validity")
        return modalities, dims, validity

    def _provenance(self, video_id: str, feature: str) -> Any:
        arrays = self._arrays[video_id] if feature in self.vector_features else self.clips.arrays(video_id)
        return arrays[feature].attrs.get("provenance")

    def _recipes(self) -> dict[str, dict[str, Any]]:
        recipes = {}
        for feature in self.features:
            first = self.video_ids[0]
            recipes[feature] = recipe(self._provenance(first, feature))
            for vid in self.video_ids[1:]:
                differing = differing_keys(recipes[feature], recipe(self._provenance(vid, feature)))
                if differing:
                    raise FeatureError(f"{self.store.location}: feature {feature!r} of video {vid!r} was extracted "
                                       f"with another recipe than video {first!r} (differing: {', '.join(differing)}); "
                                       "re-extract one of them so that all match")
        return recipes

    def frame_time(self, video_id: str) -> np.ndarray:
        """(T,) seconds: the presentation time of each frame of ``video_id``."""
        return self.store.video(video_id).read("frame_time")

    def _read(self, video_id: str, modality: str, start: int = 0, stop: int | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
        """Raw rows ``start:stop`` of ``modality``, its features side by side as float32 (into ``out`` if given)."""
        stop = self.n_frames[video_id] if stop is None else stop
        arrays = [self._arrays[video_id][name] for name in self.modalities[modality]]
        if out is None:
            out = page_aligned_empty((stop - start, self.modality_dims[modality]), np.float32)
        if len(arrays) == 1 and arrays[0].dtype == np.float32 and out.flags.c_contiguous:
            return read_rows(arrays[0], start, stop, out=out)  # straight from the chunk files into place
        column = 0
        for array in arrays:
            out[:, column:column + array.shape[1]] = read_rows(array, start, stop)
            column += array.shape[1]
        return out

    def valid(self, video_id: str, modality: str) -> np.ndarray:
        """(T,) bool validity of ``modality`` in ``video_id`` (all True when the feature names none)."""
        cache = self._valid.setdefault(video_id, {})
        if modality not in cache:
            name = self.validity[modality]
            cache[modality] = (self.store.video(video_id).read(name) if name is not None
                               else np.ones(self.n_frames[video_id], bool))
        return cache[modality]

    def fit_standardiser(self, train_ids: Sequence[str]) -> Standardiser:
        """Fit per-column mean/std on the valid frames of ``train_ids`` only (a dask reduction over the stored
        chunks, in float64), and use it from now on."""
        import dask
        import dask.array as da

        mean, std = {}, {}
        for modality, dim in self.modality_dims.items():
            parts = []
            for vid in train_ids:
                video = self.store.video(vid)
                rows = da.concatenate([video.dask(name) for name in self.modalities[modality]], axis=1)
                parts.append(rows.astype(np.float64)[self.valid(vid, modality)])
            rows = da.concatenate(parts, axis=0) if parts else da.zeros((0, dim))
            total, total_sq = dask.compute(rows.sum(axis=0), np.square(rows).sum(axis=0))
            count = max(sum(int(self.valid(vid, modality).sum()) for vid in train_ids), 1)
            mu = total / count
            var = np.maximum(total_sq / count - np.square(mu), 0.0)
            mean[modality] = mu.astype(np.float32)
            std[modality] = np.where(var > 1e-12, np.sqrt(var), 1.0).astype(np.float32)
        self.use_standardiser(Standardiser(mean, std))
        return self.standardiser

    def use_standardiser(self, standardiser: Standardiser) -> None:
        """Standardise with ``standardiser`` (in RAM: once, now)."""
        self.standardiser = standardiser
        if self.in_memory:
            self._normalised = {}  # release the previous fold's copy before building this one
            self._normalised = {
                vid: {m: standardiser.apply(m, rows, self.valid(vid, m)) for m, rows in by_modality.items()}
                for vid, by_modality in self._raw.items()}

    @property
    def input_shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Every input of a window frame: name -> (per-frame shape, dtype): each vector modality ((D_m,), float32),
        then the trunk inputs of :mod:`train.clips`."""
        shapes = {m: ((dim,), np.dtype(np.float32)) for m, dim in self.modality_dims.items()}
        return shapes | (self.clips.input_shapes if self.clips else {})

    @property
    def model_inputs(self) -> dict[str, int | tuple[int, ...]]:
        """What a model is built for (``build_model``'s ``modality_dims``): vector modality -> width, and each trunk
        input -> its per-frame shape."""
        return dict(self.modality_dims) | (self.clips.model_inputs if self.clips else {})

    def rows(self, video_id: str, start: int, stop: int,
             out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Frames ``start:stop`` of every input (:attr:`input_shapes`): standardised float32 rows of each modality and
        the trunk inputs, written into ``out`` (input name -> (stop - start, *shape) array, e.g. a window's place in a
        batch) when given."""
        if self.standardiser is None:
            raise RuntimeError("fit_standardiser or use_standardiser first")
        if out is None and self.in_memory and self.clips is None:
            return {m: rows[start:stop] for m, rows in self._normalised[video_id].items()}
        out = dict(out) if out is not None else {name: page_aligned_empty((stop - start, *shape), dtype)
                                                 for name, (shape, dtype) in self.input_shapes.items()}
        for m in self.modalities:
            if self.in_memory:
                out[m][...] = self._normalised[video_id][m][start:stop]
            else:
                self.standardiser.apply(m, self._read(video_id, m, start, stop, out[m]),
                                        self.valid(video_id, m)[start:stop], in_place=True)
        if self.clips is not None:
            self.clips.fill(video_id, start, stop, out)
        return out
