"""The trunk networks' inputs, cut from the store around each frame of a window: face clips and sub-spectrograms.

Selected by the store's array names, as vector features are (``FEATURES=face_crop,face_mask,mel64``):

- ``face_clip`` (from ``face_crop``, with ``face_mask`` as a 4th channel when selected): for each frame t of a
  window, the ``clip_frames`` crops t - (K-1) d, ..., t at dilation d (oldest first; TSAV: 8 at dilation 6; M3T: 1, its
  3D convolutions run over the window's consecutive frames), uint8 (K, S, S, C) as stored (channels last), with
  ``face_clip_valid`` (K,) bool. Frames without a face, and frames before the video's first, are zeros and False.
- ``spectrogram`` (from ``mel64``, TSAV's 10 ms rows, or ``mel64_fine``, seed 001's 5 ms rows): for each frame, the
  ``spectrogram_rows`` rows centred on the frame's row (``<feature>_row``; row R // 2 of the sub-spectrogram is the
  frame's own), float32 dB as stored, with ``spectrogram_valid`` (R,) bool; rows outside the audio are zeros and False.

A window's crops (or rows) are read once as one contiguous range of the store, straight from its chunk files
(:func:`features_store.reading.read_rows`: a clip's crops come from one or two time chunks), and gathered per frame;
uint8 crops travel as uint8 and become float on the device (:mod:`train.models.clip_input`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from features_store import FeatureStore, StoreError
from features_store.errors import AffectsyncError
from features_store.reading import read_rows

CLIP_FEATURES = ("face_crop", "face_mask")
"""Stored arrays that make the ``face_clip`` input."""
SPECTROGRAM_FEATURES = ("mel64", "mel64_fine")
"""Stored spectrograms on their own clocks, each with ``<name>_row`` (T,) and ``<name>_valid`` (R,)."""
TRUNK_FEATURES = CLIP_FEATURES + SPECTROGRAM_FEATURES


class ClipError(AffectsyncError, ValueError):
    """Clip or spectrogram inputs cannot be cut from a store as asked."""


@dataclass(frozen=True)
class ClipSpec:
    """How the trunk inputs are cut around a frame (a trunk model's config says; see the module docstring)."""

    clip_frames: int = 1
    clip_dilation: int = 1
    spectrogram_rows: int = 0

    def __post_init__(self):
        if self.clip_frames < 1 or self.clip_dilation < 1 or self.spectrogram_rows < 0:
            raise ClipError(f"clip_frames and clip_dilation must be at least 1 and spectrogram_rows at least 0, got "
                            f"{self.clip_frames}, {self.clip_dilation}, {self.spectrogram_rows}")

    @classmethod
    def of(cls, model_config: object) -> ClipSpec | None:
        """The spec a trunk model's config asks for (its ``clip_frames``, ``clip_dilation``, ``spectrogram_rows``);
        None for a model that takes no trunk inputs (a sequence model's config has no such fields)."""
        names = ("clip_frames", "clip_dilation", "spectrogram_rows")
        if not all(hasattr(model_config, name) for name in names):
            return None
        return cls(*(getattr(model_config, name) for name in names))


def clip_frame_index(start: int, stop: int, clip_frames: int, dilation: int) -> np.ndarray:
    """(stop - start, clip_frames) frame indices of each frame's clip: row l is t - (K-1) d, ..., t for t = start + l
    (negative: before the video)."""
    frames = np.arange(start, stop)[:, None]
    return frames - (clip_frames - 1 - np.arange(clip_frames))[None, :] * dilation


def centred_rows(centre_rows: np.ndarray, n_rows: int) -> np.ndarray:
    """(len(centre_rows), n_rows) row indices centred on each of ``centre_rows`` (column n_rows // 2 is the centre)."""
    return np.asarray(centre_rows, np.int64)[:, None] + (np.arange(n_rows) - n_rows // 2)[None, :]


def pack_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 and (...) uint8 as (...) uint32 whose bytes in memory are R, G, B, alpha: written through a
    uint32 view of a (..., 4) uint8 array, they land as its four channels."""
    if sys.byteorder != "little":
        raise ClipError("face clips with a mask channel are packed for little-endian machines")
    packed = alpha.astype(np.uint32) << 24
    for channel in range(3):
        packed |= rgb[..., channel].astype(np.uint32) << (8 * channel)
    return packed


def gather_rows(read, index: np.ndarray, n_available: int, out: np.ndarray, valid_out: np.ndarray,
                valid_rows: np.ndarray) -> None:
    """``out[i, j] = rows[index[i, j]]`` where the index lies in ``[0, n_available)`` and is valid, else zeros; the
    rows come from one contiguous ``read(first, stop)`` covering the indices in range; ``valid_out`` says which."""
    inside = (index >= 0) & (index < n_available)
    if not inside.any():
        out[...] = 0
        valid_out[...] = False
        return
    first, stop = int(index[inside].min()), int(index[inside].max()) + 1
    block = read(first, stop)
    local = np.clip(index - first, 0, stop - first - 1)
    keep = inside & valid_rows[np.clip(index, 0, n_available - 1)]
    np.take(block, local, axis=0, out=out)  # in place: no gathered temporary
    out[~keep] = 0
    valid_out[...] = keep


class StoreClips:
    """The trunk inputs of ``features`` (some of :data:`TRUNK_FEATURES`) in ``video_ids``, cut as ``spec`` says.

    :attr:`input_shapes`: input name -> (per-frame shape, dtype); :meth:`fill` writes a window's inputs in place.
    """

    def __init__(self, store: FeatureStore, features: Sequence[str], video_ids: Sequence[str], spec: ClipSpec):
        self.store = store
        self.spec = spec
        self.features = list(features)
        spectrograms = [name for name in self.features if name in SPECTROGRAM_FEATURES]
        if len(spectrograms) > 1:
            raise ClipError(f"choose one spectrogram of {', '.join(spectrograms)} (a trunk takes one)")
        if "face_mask" in self.features and "face_crop" not in self.features:
            raise ClipError("face_mask is the 4th channel of face_crop clips: select face_crop too")
        self.spectrogram = spectrograms[0] if spectrograms else None
        if self.spectrogram and not spec.spectrogram_rows:
            raise ClipError(f"{self.spectrogram} is selected but the model takes no spectrogram "
                            "(spectrogram_rows is 0); drop it from FEATURES or choose tsav or tdnn_transformer")
        self.with_clip = "face_crop" in self.features
        self.with_mask = "face_mask" in self.features
        self._videos = {vid: self._open(vid) for vid in video_ids}
        self.input_shapes = self._shapes()

    def _open(self, video_id: str) -> dict:
        video = self.store.video(video_id)
        names = list(self.features)
        if self.with_clip:
            names.append("face_valid")
        if self.spectrogram:
            names += [f"{self.spectrogram}_row", f"{self.spectrogram}_valid"]
        arrays = {}
        for name in names:
            try:
                arrays[name] = video.array(name)
            except StoreError as exc:
                feature = name if name in self.features else ("face_crop" if name == "face_valid"
                                                              else self.spectrogram)
                raise ClipError(f"{self.store.location}: video {video_id!r} has no {name!r} (extract it with "
                                f"--features {feature})") from exc
        # small per-frame arrays, read whole once: validity and the frames' spectrogram rows
        for name in ("face_valid", f"{self.spectrogram}_row", f"{self.spectrogram}_valid"):
            if name in arrays:
                arrays[name] = arrays[name][...]
        return arrays

    def _shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        first = next(iter(self._videos.values()))
        if self.with_clip:
            size = tuple(first["face_crop"].shape[1:3])
            for vid, arrays in self._videos.items():
                if tuple(arrays["face_crop"].shape[1:3]) != size:
                    raise ClipError(f"face_crop is {size} px in one video and {arrays['face_crop'].shape[1:3]} in "
                                    f"{vid!r}; extract every video with the same crop_size_px")
            channels = 3 + self.with_mask
            shapes["face_clip"] = ((self.spec.clip_frames, *size, channels), np.dtype(np.uint8))
            shapes["face_clip_valid"] = ((self.spec.clip_frames,), np.dtype(bool))
        if self.spectrogram:
            bands = first[self.spectrogram].shape[1]
            shapes["spectrogram"] = ((self.spec.spectrogram_rows, bands), np.dtype(np.float32))
            shapes["spectrogram_valid"] = ((self.spec.spectrogram_rows,), np.dtype(bool))
        return shapes

    def arrays(self, video_id: str) -> dict:
        """The video's opened arrays: the selected features as zarr arrays, validity and rows as numpy."""
        return self._videos[video_id]

    @property
    def model_inputs(self) -> dict[str, tuple[int, ...]]:
        """Input name -> per-frame shape, for the inputs a model sees (the validity inputs left out)."""
        return {name: shape for name, (shape, _) in self.input_shapes.items() if not name.endswith("_valid")}

    def fill(self, video_id: str, start: int, stop: int, out: Mapping[str, np.ndarray]) -> None:
        """Write frames ``start:stop`` of ``video_id`` into ``out`` (input name -> (stop - start, *shape) array)."""
        arrays = self._videos[video_id]
        if self.with_clip:
            index = clip_frame_index(start, stop, self.spec.clip_frames, self.spec.clip_dilation)
            n_frames = arrays["face_crop"].shape[0]
            if self.with_mask:  # whole 4-byte pixels: writing 3 of every 4 bytes is several times slower
                def read(first: int, stop: int) -> np.ndarray:
                    return pack_rgba(read_rows(arrays["face_crop"], first, stop),
                                     read_rows(arrays["face_mask"], first, stop))
                clip = out["face_clip"].view(np.uint32)[..., 0]
            else:
                def read(first: int, stop: int) -> np.ndarray:
                    return read_rows(arrays["face_crop"], first, stop)
                clip = out["face_clip"]
            gather_rows(read, index, n_frames, clip, out["face_clip_valid"], arrays["face_valid"])
        if self.spectrogram:
            spectrogram = arrays[self.spectrogram]
            index = centred_rows(arrays[f"{self.spectrogram}_row"][start:stop], self.spec.spectrogram_rows)
            gather_rows(lambda a, b: read_rows(spectrogram, a, b), index, spectrogram.shape[0], out["spectrogram"],
                        out["spectrogram_valid"], arrays[f"{self.spectrogram}_valid"])
