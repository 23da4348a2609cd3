"""Benchmark: can the store feed the trunk networks (TSAV, M3T's 3D VGG) their per-frame clips fast enough?

A generated store of 6 videos x 2 min at 30 fps (21,600 frames) holding what the trunks read: ``face_crop``
(T, 128, 128, 3) uint8 and ``face_mask`` (T, 128, 128) uint8, smooth random images chunked along time as the
extractor writes them (1 MB chunks of whole frames), ``face_valid`` (a few faceless frames), and ``mel64`` at 100
rows/s with ``mel64_valid`` and ``mel64_row``. Two measurements, interleaved where they compare:

- ``trunk_clips``: clips/s that :meth:`train.windows.WindowBatches.assemble` makes from the store (the clips are always
  read per window, :mod:`train.clips`) against the same clips gathered from the same arrays loaded whole into RAM
  beforehand (numpy indexing with :func:`train.clips.clip_frame_index` / :func:`train.clips.centred_rows`, into the
  same zero-filled batch arrays), for the same random windows, best of interleaved rounds; for each input kind:
  TSAV's face clips (8 crops at dilation 6 + the mask channel, 8-frame windows), M3T's consecutive crops (one crop
  per frame, 32-frame windows) and TSAV's sub-spectrograms (1001 rows x 64 around each frame). The store was just
  written, so its chunk files are in the page cache, as on a machine whose RAM holds the store: this is the reading
  and gathering cost, not the disk's.
- ``trunk_data_wait``: a tiny TSAV trains on the CPU, EXPR with random labels, over shuffled 8-frame windows,
  batches of 4 windows (32 frames). Its inputs are full size (each frame's 8 x 128 px RGB + mask clip and 1001 x 64
  sub-spectrogram), its compute is shrunk so that a CPU step takes seconds, not minutes (stage widths 4-32 in both
  streams, 64 px crops of the clips; the paper's widths at 112 px take over a minute a step on 2 cores; a faster step
  is the harder case for the data side). Batches are assembled on a thread one batch ahead (``workers=0``) or by 2
  DataLoader processes that open the store themselves (``workers=2``), against the same kind of batches pre-assembled
  in RAM (``in_memory``), in interleaved rounds. ``data_wait_fraction``: the share of the training time spent waiting
  for the next batch after each round's first (target: at most 10 %, as for the sequence models in
  ``bench/train.py``); ``data_wait_fraction_with_first`` counts the first batch too (an epoch's start, when the thread
  or the worker processes have nothing ready yet: an epoch has hundreds of batches, a round here a few);
  ``assemble_batch_s``: one batch assembled alone; ``ratio_over_in_memory``: steps/s against the pre-assembled
  batches (what assembling costs the steps beyond the wait, on the cores they share).

Timings are wall clock on a machine that may be shared: ``load_average_1min`` (of the whole machine, this run
included) tells a run that shared its cores with something else; a training step with two threads on two cores slows
down by several times when another process takes a core.
Prints JSON lines (``make bench``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.results import best_seconds, best_seconds_interleaved, emit
from bench.train import train_step
from eval.tasks import expr_task
from features_store import FeatureStore
from features_store.schema import ArraySchema
from train.clips import ClipSpec, centred_rows, clip_frame_index, pack_rgba
from train.features import StoreFeatures
from train.losses import LossConfig, MultiTaskLoss
from train.models import build_model, model_config
from train.windows import Window, WindowBatches, WindowConfig

FPS = 30
VIDEOS = 6
FRAMES_PER_VIDEO = 2 * 60 * FPS
CROP_PX = 128
MEL_RATE_HZ = 100
MEL_BANDS = 64
FACELESS_SHARE = 0.05
CLIP_WINDOWS = 64
CLIP_ROUNDS = 3
TSAV_OVERRIDES = {"visual_widths": (4, 8, 16, 32), "aural_widths": (4, 8, 16, 32), "spectrogram_rows": 1001,
                  "crop_fraction": 0.5}
TRAIN_BATCH = 4
TRAIN_WINDOW = WindowConfig(8, 8)
TRAIN_ROUNDS = 2
STEPS_PER_ROUND = 5
N_CLASSES = 8


# ----------------------------------------------------------------------------------------------------------------------
# The generated store
# ----------------------------------------------------------------------------------------------------------------------

def smooth_images(rng: np.random.Generator, n: int, channels: int) -> np.ndarray:
    """(n, CROP_PX, CROP_PX, channels) uint8: 16 x 16 blocks of random levels that drift slowly from frame to
    frame, plus fine random texture (nothing constant, nothing trivially compressible)."""
    coarse = np.cumsum(rng.integers(-6, 7, (n, 16, 16, channels), dtype=np.int16), axis=0)
    coarse = (coarse + rng.integers(40, 200, (1, 16, 16, channels), dtype=np.int16)) % 192
    block = CROP_PX // 16
    images = np.repeat(np.repeat(coarse.astype(np.uint8), block, axis=1), block, axis=2)
    texture = np.frombuffer(rng.bytes(images.size), np.uint8).reshape(images.shape) & 0x3F
    images += texture
    return images


def generate_store(location: Path) -> FeatureStore:
    """The store the module docstring describes."""
    store = FeatureStore(str(location), mode="a")
    rng = np.random.default_rng(0)
    provenance = {"extractor": "bench.trunks", "version": "1", "parameters": {}, "libraries": {},
                  "created_utc": "generated"}
    frames = FRAMES_PER_VIDEO
    frame_time = np.arange(frames) / FPS
    n_rows = int(np.ceil(frame_time[-1] * MEL_RATE_HZ)) + 1
    row_time = np.arange(n_rows) / MEL_RATE_HZ
    schemas = {
        "frame_time": ArraySchema(kind="time"),
        "face_valid": ArraySchema(kind="validity"),
        "face_crop": ArraySchema(axes=("y", "x", "channel"), validity="face_valid"),
        "face_mask": ArraySchema(axes=("y", "x"), validity="face_valid"),
        "mel64": ArraySchema(clock="mel64_time", units="dB", validity="mel64_valid"),
        "mel64_time": ArraySchema(kind="time", clock="mel64_time", units="s"),
        "mel64_valid": ArraySchema(kind="validity", clock="mel64_time"),
        "mel64_row": ArraySchema(kind="index", indexes="mel64"),
    }
    for index in range(VIDEOS):
        vid = f"trunk_{index:02d}"
        video = store.create_video(vid, {"source_name": f"{vid}.mp4", "source_size_bytes": 0, "source_sha256": "",
                                         "n_frames": frames, "width": 640, "height": 360, "fps": FPS,
                                         "duration_s": frames / FPS})
        face_valid = rng.random(frames) >= FACELESS_SHARE
        crops = smooth_images(rng, frames, 3)
        crops[~face_valid] = 0
        masks = np.where(smooth_images(rng, frames, 1)[..., 0] > 200, 255, 0).astype(np.uint8)
        masks[~face_valid] = 0
        mel = (np.cumsum(rng.standard_normal((n_rows, MEL_BANDS), dtype=np.float32), axis=0) / 10 - 40)
        arrays = {"frame_time": frame_time, "face_valid": face_valid, "face_crop": crops, "face_mask": masks,
                  "mel64": mel.astype(np.float32), "mel64_time": row_time, "mel64_valid": np.ones(n_rows, bool),
                  "mel64_row": np.rint(frame_time * MEL_RATE_HZ).astype(np.int32)}
        for name, data in arrays.items():
            video.write(name, data, {"provenance": provenance}, schemas[name])
        video.set_complete(True)
    return store


def store_bytes(location: Path) -> int:
    return sum(path.stat().st_size for path in location.rglob("*") if path.is_file())


# ----------------------------------------------------------------------------------------------------------------------
# Clips/s: store against RAM
# ----------------------------------------------------------------------------------------------------------------------

CLIP_KINDS = (
    # name, what, stored features, clip spec, window frames, windows per batch
    ("tsav_face_clip", "TSAV face clips: 8 crops at dilation 6, RGB + mask, 128 px",
     ["face_crop", "face_mask"], ClipSpec(8, 6, 0), 8, 4),
    ("m3t_crops", "M3T consecutive crops: one RGB 128 px crop per frame, 32-frame windows",
     ["face_crop"], ClipSpec(1, 1, 0), 32, 4),
    ("tsav_spectrogram", "TSAV sub-spectrograms: 1001 mel64 rows x 64 centred on each frame",
     ["mel64"], ClipSpec(1, 1, 1001), 8, 4),
)


class RamClips:
    """The arrays the trunk inputs come from, read whole into RAM; :meth:`assemble` gathers a batch of windows into
    the same arrays ``WindowBatches.assemble`` makes (inputs only), with the same index arithmetic."""

    def __init__(self, store: FeatureStore, features: list[str], video_ids: list[str], spec: ClipSpec,
                 input_shapes: dict, length: int):
        self.spec, self.input_shapes, self.length = spec, input_shapes, length
        names = list(features) + (["face_valid"] if "face_crop" in features else []) + (
            ["mel64_row", "mel64_valid"] if "mel64" in features else [])
        self.arrays = {vid: {name: store.video(vid).read(name) for name in names} for vid in video_ids}
        if "face_mask" in features:  # RAM's best case: the 4-channel pixels packed once, as the store path packs
            for arrays in self.arrays.values():    # each window's read
                arrays["face_crop"] = pack_rgba(arrays["face_crop"], arrays.pop("face_mask"))

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for arrays in self.arrays.values() for array in arrays.values())

    @staticmethod
    def gather(source: np.ndarray, index: np.ndarray, row_valid: np.ndarray, out: np.ndarray,
               valid_out: np.ndarray) -> None:
        inside = (index >= 0) & (index < len(source))
        safe = np.clip(index, 0, len(source) - 1)
        keep = inside & row_valid[safe]
        out[...] = source[safe]
        out[~keep] = 0
        valid_out[...] = keep

    def assemble(self, windows: list[Window]) -> dict[str, np.ndarray]:
        n = len(windows)
        inputs = {name: np.zeros((n, self.length, *shape), dtype) for name, (shape, dtype) in self.input_shapes.items()}
        for i, window in enumerate(windows):
            arrays, size = self.arrays[window.video_id], window.stop - window.start
            if "face_crop" in arrays:
                index = clip_frame_index(window.start, window.stop, self.spec.clip_frames, self.spec.clip_dilation)
                clip, valid = inputs["face_clip"][i, :size], inputs["face_clip_valid"][i, :size]
                packed = arrays["face_crop"].dtype == np.uint32
                self.gather(arrays["face_crop"], index, arrays["face_valid"],
                            clip.view(np.uint32)[..., 0] if packed else clip, valid)
            if "mel64" in arrays:
                index = centred_rows(arrays["mel64_row"][window.start:window.stop], self.spec.spectrogram_rows)
                self.gather(arrays["mel64"], index, arrays["mel64_valid"], inputs["spectrogram"][i, :size],
                            inputs["spectrogram_valid"][i, :size])
        return inputs


def random_windows(store: FeatureStore, video_ids: list[str], length: int, count: int, seed: int) -> list[Window]:
    """``count`` windows of ``length`` frames at random starts in random videos."""
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(count):
        vid = video_ids[int(rng.integers(len(video_ids)))]
        start = int(rng.integers(0, store.video(vid).n_frames - length + 1))
        windows.append(Window(vid, start, start + length))
    return windows


def bench_clips(store: FeatureStore, video_ids: list[str], seed: int, name: str, what: str, names: list[str],
                spec: ClipSpec, length: int, batch: int) -> None:
    features = StoreFeatures(store, names, video_ids, in_memory=False, clips=spec)
    features.fit_standardiser(video_ids)
    loader = WindowBatches(features, video_ids, WindowConfig(length, length), batch)
    windows = random_windows(store, video_ids, length, CLIP_WINDOWS, seed)
    groups = [windows[i:i + batch] for i in range(0, len(windows), batch)]
    started = time.perf_counter()
    ram = RamClips(store, names, video_ids, spec, features.input_shapes, length)
    load_s = time.perf_counter() - started
    for group in groups[:2]:  # the same clips both ways
        ours, theirs = loader.assemble(group).inputs, ram.assemble(group)
        assert all(np.array_equal(ours[key], theirs[key]) for key in ours), name
    seconds = best_seconds_interleaved({
        "store": lambda: [loader.assemble(group) for group in groups],
        "ram": lambda: [ram.assemble(group) for group in groups],
    }, rounds=CLIP_ROUNDS)
    clips = len(windows) * length
    input_name = "spectrogram" if spec.spectrogram_rows else "face_clip"
    shape, dtype = features.input_shapes[input_name]
    clip_mb = int(np.prod(shape)) * dtype.itemsize / 1e6
    emit(bench="trunk_clips", input=name, what=what, clip_shape=list(shape), dtype=str(dtype),
         window_frames=length, batch_windows=batch, windows=len(windows), clips=clips,
         store_clips_per_s=round(clips / seconds["store"], 1), ram_clips_per_s=round(clips / seconds["ram"], 1),
         ratio_store_over_ram=round(seconds["ram"] / seconds["store"], 3),
         store_mb_per_s=round(clips * clip_mb / seconds["store"], 1), ram_load_s=round(load_s, 2),
         ram_gb=round(ram.nbytes / 1e9, 2))


# ----------------------------------------------------------------------------------------------------------------------
# The share of a CPU training step spent waiting for data
# ----------------------------------------------------------------------------------------------------------------------

def take(batches, n: int):
    """The first ``n`` batches, then close the generator (its thread or worker processes stop before the clock moves
    on)."""
    try:
        for _, batch in zip(range(n), batches):
            yield batch
    finally:
        batches.close()


def timed_steps(model, criterion, optimiser, batches) -> list[tuple[float, float]]:
    """Train on ``batches`` (inputs, frame mask, labels, masks tuples); per step (seconds waiting for its batch,
    seconds in all)."""
    steps = []
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        item = next(iterator, None)
        waited = time.perf_counter() - started
        if item is None:
            return steps
        train_step(model, criterion, optimiser, item)
        steps.append((waited, time.perf_counter() - started))


def bench_data_wait(store: FeatureStore, video_ids: list[str]) -> None:
    torch.manual_seed(0)
    config = model_config("tsav", **TSAV_OVERRIDES)
    features = StoreFeatures(store, ["face_crop", "face_mask", "mel64"], video_ids, clips=ClipSpec.of(config))
    features.fit_standardiser(video_ids)
    rng = np.random.default_rng(1)
    labels = {vid: {"expr": rng.integers(0, N_CLASSES, features.n_frames[vid])} for vid in video_ids}
    masks = {vid: {"expr": np.ones(features.n_frames[vid], bool)} for vid in video_ids}
    model = build_model("tsav", features.model_inputs, [expr_task()], **TSAV_OVERRIDES).train()
    criterion = MultiTaskLoss(LossConfig(), {"expr": expr_task()})
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    cpu = torch.device("cpu")

    def loader(workers: int) -> WindowBatches:
        return WindowBatches(features, video_ids, TRAIN_WINDOW, TRAIN_BATCH, labels=labels, label_masks=masks,
                             shuffle=True, workers=workers)

    # the in-memory peer: batches of the same kind, assembled and made tensors before the clock starts
    stacked = [batch.to(cpu) for batch in take(loader(0).batches(epoch=99), STEPS_PER_ROUND)]
    in_thread = loader(0)
    groups = in_thread.groups(epoch=98)[:3]  # assembling alone, no training step running
    assemble_s = best_seconds(lambda: [in_thread.assemble(group) for group in groups]) / len(groups)
    timed_steps(model, criterion, optimiser, stacked[:2])  # warm-up
    arms = {"thread": 0, "workers": 2, "in_memory": None}
    timings: dict[str, list[list[tuple[float, float]]]] = {name: [] for name in arms}
    for round_index in range(TRAIN_ROUNDS):
        for name, workers in arms.items():
            source = stacked if workers is None else (
                batch.to(cpu) for batch in take(loader(workers).batches(epoch=round_index), STEPS_PER_ROUND))
            timings[name].append(timed_steps(model, criterion, optimiser, source))
            del source

    def total(name: str, skip_first: bool) -> tuple[float, float]:
        steps = [step for rounds in timings[name] for step in (rounds[1:] if skip_first else rounds)]
        return sum(w for w, _ in steps), sum(s for _, s in steps)

    in_memory_s = total("in_memory", False)[1]
    n_steps = TRAIN_ROUNDS * STEPS_PER_ROUND
    for name, workers in arms.items():
        if workers is None:
            continue
        waited, seconds = total(name, True)
        waited_all, seconds_all = total(name, False)
        emit(bench="trunk_data_wait", model="tsav", what="TSAV with stage widths 4-32 and 64 px crops on 8 x "
             "dilation 6 RGB + mask 128 px clips and 1001 x 64 sub-spectrograms, EXPR", loader=name, workers=workers,
             overrides={key: list(value) if isinstance(value, tuple) else value
                        for key, value in TSAV_OVERRIDES.items()}, device="cpu",
             threads=torch.get_num_threads(), window_frames=TRAIN_WINDOW.length_frames, batch=TRAIN_BATCH,
             steps=n_steps, step_s=round(seconds_all / n_steps, 3), assemble_batch_s=round(assemble_s, 4),
             in_memory_step_s=round(in_memory_s / n_steps, 3),
             ratio_over_in_memory=round(in_memory_s / seconds_all, 3),
             first_batch_wait_s=round(max(r[0][0] for r in timings[name]), 3),
             data_wait_fraction=round(waited / seconds, 4),
             data_wait_fraction_with_first=round(waited_all / seconds_all, 4), target_cost_at_most=0.10,
             load_average_1min=round(os.getloadavg()[0], 2))


def main() -> None:
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    with tempfile.TemporaryDirectory() as tmp:
        location = Path(tmp) / "trunks.zarr"
        started = time.perf_counter()
        store = generate_store(location)
        os.sync()  # the files were just written: time reads, not the writeback competing with them
        video_ids = store.video_ids()
        emit(bench="trunk_store", videos=VIDEOS, frames=VIDEOS * FRAMES_PER_VIDEO, crop_px=CROP_PX,
             mel64_rows_per_s=MEL_RATE_HZ, disk_gb=round(store_bytes(location) / 1e9, 2),
             generate_s=round(time.perf_counter() - started, 1), load_average_1min=round(os.getloadavg()[0], 2))
        for seed, kind in enumerate(CLIP_KINDS):
            bench_clips(store, video_ids, seed, *kind)
        bench_data_wait(store, video_ids)


if __name__ == "__main__":
    main()
