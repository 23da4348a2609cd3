"""Windows over a store's videos and the batches a model trains on.

Two ways to cut sequences (frame counts, not seconds, because labels align by frame index):

- ``sliding`` (ABAW3, seed 003): windows of ``length_frames`` every ``hop_frames`` (300 / 200), plus a tail window
  ending on the last frame so no frame is left out; a video shorter than a window is one window, zero-padded, with a
  frame mask.
- ``random`` (M3T, seed 000): each epoch, ``random_windows_per_video`` windows of ``length_frames`` (32) at random
  starts in every video.

A :class:`Batch` holds, per modality, inputs (B, L, D_m) (and the trunk inputs of :mod:`train.clips`, (B, L, *shape)
uint8 face clips or float32 sub-spectrograms); a frame mask (B, L) that is False on padding; and per task the labels
and a label mask (B, L), False on padding, on invalid labels and on frames outside the split being used.
Batches are assembled one batch ahead on a background thread, or, with ``workers``, by that many DataLoader processes,
each of which opens the store itself after the fork.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from train.features import StoreFeatures


@dataclass(frozen=True)
class WindowConfig:
    """How sequences are cut from videos (frames)."""

    length_frames: int = 300
    hop_frames: int = 200
    sampling: Literal["sliding", "random"] = "sliding"
    random_windows_per_video: int = 16

    def __post_init__(self):
        if self.length_frames < 1 or self.hop_frames < 1:
            raise ValueError(f"window length and hop must be positive frames, got {self.length_frames}/{self.hop_frames}")
        if self.sampling not in ("sliding", "random"):
            raise ValueError(f"window sampling must be 'sliding' or 'random', got {self.sampling!r}")


ABAW3_WINDOWS = WindowConfig(length_frames=300, hop_frames=200)
"""ABAW3 (seed 003, Sec. 3.2): 300-frame windows every 200 frames."""


def sliding_starts(n_frames: int, length_frames: int, hop_frames: int) -> list[int]:
    """Start frames of sliding windows covering all ``n_frames``: every hop, plus a tail window ending on the last."""
    if n_frames <= length_frames:
        return [0]
    starts = list(range(0, n_frames - length_frames + 1, hop_frames))
    if starts[-1] + length_frames < n_frames:
        starts.append(n_frames - length_frames)
    return starts


@dataclass(frozen=True)
class Window:
    """Frames ``start:stop`` of one video (``stop - start`` may be shorter than the window length)."""

    video_id: str
    start: int
    stop: int


@dataclass
class Batch:
    """One batch as numpy arrays (CPU tensors when a worker process made it; see the module docstring); :meth:`to`
    moves it to torch on a device."""

    inputs: dict[str, np.ndarray]
    frame_mask: np.ndarray
    labels: dict[str, np.ndarray]
    label_masks: dict[str, np.ndarray]
    windows: list[Window]

    def to(self, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor],
                                                dict[str, torch.Tensor]]:
        pin = device.type == "cuda"  # page-locked memory lets the copy overlap the previous step's compute

        def move(array: np.ndarray | torch.Tensor) -> torch.Tensor:
            tensor = torch.as_tensor(array)
            return (tensor.pin_memory() if pin else tensor).to(device, non_blocking=pin)
        return ({m: move(x) for m, x in self.inputs.items()}, move(self.frame_mask),
                {t: move(y) for t, y in self.labels.items()}, {t: move(k) for t, k in self.label_masks.items()})


class WindowBatches:
    """Batches of windows over ``features`` with their labels.

    ``labels``: video id -> task -> per-frame labels with T rows (organisers' coding);
    ``label_masks``: video id -> task -> (T,) bool, True on frames to learn from (or score). Without labels
    (prediction) batches carry inputs and frame masks only.
    """

    def __init__(self, features: StoreFeatures, video_ids: list[str], config: WindowConfig, batch_size: int,
                 labels: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                 label_masks: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                 shuffle: bool = False, seed: int = 0, workers: int = 0):
        self.features = features
        self.workers = workers
        self.video_ids = list(video_ids)
        self.config = config
        self.batch_size = batch_size
        self.labels = labels or {}
        self.label_masks = label_masks or {}
        self.shuffle = shuffle
        self.seed = seed

    def windows(self, epoch: int = 0) -> list[Window]:
        """This epoch's windows (random ones are drawn again each epoch, reproducibly from seed and epoch)."""
        length = self.config.length_frames
        rng = np.random.default_rng([self.seed, epoch])
        windows = []
        for vid in self.video_ids:
            n_frames = self.features.n_frames[vid]
            if self.config.sampling == "random":
                starts = rng.integers(0, max(n_frames - length, 0) + 1, size=self.config.random_windows_per_video)
            else:
                starts = sliding_starts(n_frames, length, self.config.hop_frames)
            windows += [Window(vid, int(s), min(int(s) + length, n_frames)) for s in starts]
        if self.shuffle:
            windows = [windows[i] for i in rng.permutation(len(windows))]
        return windows

    def __len__(self) -> int:
        return -(-len(self.windows(0)) // self.batch_size)

    def groups(self, epoch: int = 0) -> list[list[Window]]:
        """This epoch's windows in batches of ``batch_size`` windows (the last may be smaller)."""
        windows = self.windows(epoch)
        return [windows[i:i + self.batch_size] for i in range(0, len(windows), self.batch_size)]

    def batches(self, epoch: int = 0) -> Iterator[Batch]:
        """This epoch's batches; the next batch is assembled on a thread while the caller works on this one."""
        groups = self.groups(epoch)
        if not groups:
            return
        if self.workers:
            yield from torch.utils.data.DataLoader(
                AssembledBatches(self, groups), batch_size=None, num_workers=self.workers,
                worker_init_fn=reopen_in_worker, multiprocessing_context="fork", prefetch_factor=2)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.assemble, groups[0])
            for next_group in groups[1:] + [None]:
                batch = pending.result()
                pending = pool.submit(self.assemble, next_group) if next_group else None
                yield batch

    def assemble(self, windows: list[Window]) -> Batch:
        """Stack ``windows`` into one zero-padded batch of ``length_frames``."""
        length = self.config.length_frames
        n = len(windows)
        inputs = {name: np.zeros((n, length, *shape), dtype)
                  for name, (shape, dtype) in self.features.input_shapes.items()}
        frame_mask = np.zeros((n, length), bool)
        tasks = next(iter(self.labels.values())).keys() if self.labels else ()
        labels: dict[str, np.ndarray] = {}
        label_masks = {t: np.zeros((n, length), bool) for t in tasks}
        for i, window in enumerate(windows):
            size = window.stop - window.start
            self.features.rows(window.video_id, window.start, window.stop,
                               out={name: batch[i, :size] for name, batch in inputs.items()})
            frame_mask[i, :size] = True
            for task in tasks:
                rows = self.labels[window.video_id][task][window.start:window.stop]
                if task not in labels:
                    labels[task] = np.zeros((n, length, *rows.shape[1:]), rows.dtype)
                labels[task][i, :size] = rows
                label_masks[task][i, :size] = self.label_masks[window.video_id][task][window.start:window.stop]
        for task, values in labels.items():
            values[~label_masks[task]] = 0  # masked frames hold in-range values (e.g. no -1 class index)
        return Batch(inputs, frame_mask, labels, label_masks, windows)


class AssembledBatches(torch.utils.data.Dataset):
    """The batches of ``groups`` as a map-style dataset: item i is :meth:`WindowBatches.assemble` of group i."""

    def __init__(self, source: WindowBatches, groups: list[list[Window]]):
        self.source = source
        self.groups = groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> Batch:
        """Batch ``index`` with tensors for arrays: the DataLoader hands tensors over in shared memory (numpy arrays
        would be pickled through a pipe, several times slower for a batch of clips)."""
        batch = self.source.assemble(self.groups[index])
        def shared(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
            return {name: torch.from_numpy(array) for name, array in arrays.items()}
        return Batch(shared(batch.inputs), torch.from_numpy(batch.frame_mask), shared(batch.labels),
                     shared(batch.label_masks), batch.windows)


def reopen_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the worker opens the store anew (zarr handles are not shared across a fork)."""
    torch.utils.data.get_worker_info().dataset.source.features.reopen()
