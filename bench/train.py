"""Benchmark: does the data pipeline slow training down?

A generated store shaped like one hour of 30 fps video (12 videos x 5 min = 108,000 frames) with three per-frame
features of 128 (audio), 768 (word) and 512 (face) columns and per-frame VA labels. A 2-layer bi-GRU (hidden 256,
M3T concat fusion) trains on ABAW3 windows (300 frames, hop 200) two ways, interleaved in the same run:

- ``pipeline``: store -> StoreFeatures (RAM) -> WindowBatches (slicing, padding, masks, a thread one batch ahead);
- ``in_memory``: the same windows pre-stacked into torch tensors beforehand, only indexed per step.

Reported: windows/s of each and their ratio (noisy: whole training steps are timed); ``data_wait_fraction``, the
share of the pipeline arm's time spent waiting for its next batch, which is the pipeline's own cost (target: at most
10 %); and the windows/s of assembling batches alone, from RAM and read chunk-wise from the store (the headroom).
Runs on CUDA when present.
Prints JSON lines (``make bench``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.results import emit
from eval.tasks import va_task
from features_store import FeatureStore
from features_store.common import pick_device
from train.features import StoreFeatures
from train.losses import LossConfig, MultiTaskLoss
from train.models import build_model
from train.windows import WindowBatches, WindowConfig

FPS = 30
VIDEOS = 12
FRAMES_PER_VIDEO = 5 * 60 * FPS
MODALITY_DIMS = {"audio": 128, "word": 768, "face": 512}
BATCH_SIZE = 8
STEPS_PER_ROUND = 4
ROUNDS = 5


def generate_store(location: Path) -> tuple[FeatureStore, dict]:
    """A store of smooth random features (one per modality) and VA labels; returns it and the labels."""
    store = FeatureStore(str(location), mode="a")
    rng = np.random.default_rng(0)
    provenance = {"extractor": "bench.train", "version": "1", "parameters": {}, "libraries": {},
                  "created_utc": "generated"}
    labels = {}
    for index in range(VIDEOS):
        vid = f"hour_{index:02d}"
        video = store.create_video(vid, {"source_name": f"{vid}.mp4", "source_size_bytes": 0, "source_sha256": "",
                                         "n_frames": FRAMES_PER_VIDEO, "width": 640, "height": 360, "fps": FPS,
                                         "duration_s": FRAMES_PER_VIDEO / FPS})
        video.write("frame_time", np.arange(FRAMES_PER_VIDEO) / FPS, {"per_frame": True, "provenance": provenance})
        for modality, dim in MODALITY_DIMS.items():
            video.write(f"{modality}_valid", np.ones(FRAMES_PER_VIDEO, bool),
                        {"per_frame": True, "provenance": provenance})
            data = rng.standard_normal((FRAMES_PER_VIDEO, dim), dtype=np.float32)
            video.write(f"synthetic_{modality}{dim}", np.cumsum(data, axis=0) / 30,
                        {"per_frame": True, "validity": f"{modality}_valid", "provenance": provenance})
        t = np.arange(FRAMES_PER_VIDEO) / FPS
        labels[vid] = {"va": np.stack([np.sin(t / 7 + index), np.cos(t / 11)], axis=1).astype(np.float32)}
        video.set_complete(True)
    return store, labels


def take(batches, n: int):
    """The first ``n`` batches, then close the generator (its prefetch thread stops before the clock moves on)."""
    try:
        for _, batch in zip(range(n), batches):
            yield batch
    finally:
        batches.close()


def train_steps(model, criterion, optimiser, batches) -> tuple[int, float]:
    """Train on ``batches`` (inputs, frame mask, labels, masks tuples); returns the windows seen and the seconds
    spent waiting for the next batch (the data pipeline's visible cost)."""
    seen, waited = 0, 0.0
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        item = next(iterator, None)
        waited += time.perf_counter() - started
        if item is None:
            return seen, waited
        seen += train_step(model, criterion, optimiser, item)


def train_step(model, criterion, optimiser, item) -> int:
    """One optimiser step on ``item`` (inputs, frame mask, labels, masks), finished on the device; returns the
    windows it held."""
    inputs, frame_mask, labels, masks = item
    outputs = model(inputs, frame_mask)
    loss, _ = criterion(outputs, labels, masks)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    if frame_mask.is_cuda:
        torch.cuda.synchronize()
    return len(frame_mask)


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        store, labels = generate_store(Path(tmp) / "hour.zarr")
        features_names = [f"synthetic_{m}{d}" for m, d in MODALITY_DIMS.items()]
        video_ids = store.video_ids()
        emit(bench="train_store", videos=VIDEOS, frames=VIDEOS * FRAMES_PER_VIDEO, dims=list(MODALITY_DIMS.values()),
             generate_s=round(time.perf_counter() - started, 1))

        started = time.perf_counter()
        features = StoreFeatures(store, features_names, video_ids)
        features.fit_standardiser(video_ids)
        load_s = time.perf_counter() - started
        masks = {vid: {"va": np.ones(FRAMES_PER_VIDEO, bool)} for vid in video_ids}
        window = WindowConfig(300, 200)
        pipeline = WindowBatches(features, video_ids, window, BATCH_SIZE, labels=labels, label_masks=masks,
                                 shuffle=True)
        n_batches = len(pipeline)
        emit(bench="train_load", seconds=round(load_s, 2), windows_per_epoch=len(pipeline.windows()),
             batches_per_epoch=n_batches)

        # batch assembly alone: from RAM, and read chunk-wise from the store
        for name, source in (("ram", features),
                             ("chunkwise", StoreFeatures(store, features_names, video_ids, in_memory=False))):
            source.use_standardiser(features.standardiser)
            loader = WindowBatches(source, video_ids, window, BATCH_SIZE, labels=labels, label_masks=masks,
                                   shuffle=True)
            started = time.perf_counter()
            count = sum(len(batch.windows) for batch in take(loader.batches(), 40))
            emit(bench="train_batches_only", source=name,
                 windows_per_s=round(count / (time.perf_counter() - started), 1))

        device = pick_device()
        model = build_model("m3t_concat", features.modality_dims, [va_task()], gru_hidden=256, gru_layers=2)
        model.to(device).train()
        criterion = MultiTaskLoss(LossConfig(), {"va": va_task()})
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        # the in-memory peer: the same kind of windows, stacked into tensors on the device before the clock starts
        stacked = [batch.to(device) for batch in take(pipeline.batches(epoch=99), STEPS_PER_ROUND)]
        train_steps(model, criterion, optimiser, stacked[:1])  # warm-up
        timings = {"pipeline": [0.0, 0, 0.0], "in_memory": [0.0, 0, 0.0]}
        for round_index in range(ROUNDS):
            for name in ("pipeline", "in_memory"):
                source = (stacked if name == "in_memory" else
                          (batch.to(device) for batch in take(pipeline.batches(epoch=round_index), STEPS_PER_ROUND)))
                started = time.perf_counter()
                seen, waited = train_steps(model, criterion, optimiser, source)
                timings[name][0] += time.perf_counter() - started
                timings[name][1] += seen
                timings[name][2] += waited
        rates = {name: seen / seconds for name, (seconds, seen, _) in timings.items()}
        seconds, _, waited = timings["pipeline"]
        emit(bench="train_windows_per_s", model="m3t_concat bi-GRU 2x256", window_frames=300, batch=BATCH_SIZE,
             device=str(device), threads=torch.get_num_threads(), steps=ROUNDS * STEPS_PER_ROUND,
             pipeline=round(rates["pipeline"], 2), in_memory=round(rates["in_memory"], 2),
             ratio=round(rates["pipeline"] / rates["in_memory"], 3),
             data_wait_fraction=round(waited / seconds, 4), target_cost_at_most=0.10)


if __name__ == "__main__":
    main()
