"""Benchmark at Aff-Wild2's scale (``make bench-scale``; minutes and tens of GB of disk, never part of ``make test``).

A generated store shaped like Aff-Wild2: 548 videos whose lengths are drawn from its range (about 0.3 to 25 minutes at
30 fps) and scaled to 2.8 M frames in all, each with ``frame_time``, three validity arrays and three features of 128
(``vggish``, audio), 768 (``bert``, word) and 2048 (``senet``, face) float32 columns: 33 GB. Measured:

- ``scale_store``: the whole-process time of ``python -m features_store info``, ``ls`` and ``verify`` and the time to
  write consolidated metadata, and how they grow with the number of videos: the Aff-Wild2 layout at 100, 548 and 2000
  videos with the feature widths divided by ``--narrow`` (16: metadata and chunk counts like the real ones, bytes
  that fit on a laptop's disk). Targets: ``info`` under 5 s.
- ``scale_verify``: ``verify`` over the full-width store against reading the same chunk files raw, in GB/s (target:
  verify at disk speed, i.e. a ratio near 1).
- ``scale_training``: windows/s of assembling ABAW3 training batches (300-frame windows, batch 8, shuffled) over a
  subset of the full-width store that fits in RAM, read chunk-wise (``in_memory=False``, as a 2.8 M-frame store must
  be read; after one untimed epoch, so that both arms read memory) against the same windows from RAM; target:
  chunk-wise at least half the RAM rate.

``python -m bench.scale [--workdir DIR] [--videos 100,548,2000] [--full-videos 548] [--narrow 16]``; the store is
written under ``--workdir`` (default: a temporary folder) and removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.results import emit
from features_store import FeatureStore

FPS = 30
AFFWILD2_VIDEOS = 548
AFFWILD2_FRAMES = 2_800_000
SHORTEST_FRAMES, LONGEST_FRAMES = 10 * FPS, 25 * 60 * FPS
FEATURES = {"vggish": ("audio", 128), "bert": ("word", 768), "senet": ("face", 2048)}
PROVENANCE = {"extractor": "bench.scale", "version": "1", "parameters": {}, "libraries": {}, "created_utc": "generated"}
WINDOW_FRAMES, BATCH = 300, 8


def video_lengths(n_videos: int, rng: np.random.Generator) -> np.ndarray:
    """Frame counts of ``n_videos`` videos: log-normal, clipped to Aff-Wild2's range, Aff-Wild2's mean length."""
    lengths = rng.lognormal(mean=0.0, sigma=0.8, size=n_videos)
    lengths *= (AFFWILD2_FRAMES / AFFWILD2_VIDEOS) / lengths.mean()
    return np.clip(lengths, SHORTEST_FRAMES, LONGEST_FRAMES).astype(np.int64)


def generate(location: Path, n_videos: int, narrow: int, seed: int = 0) -> dict[str, int]:
    """A store of ``n_videos`` generated videos (feature widths divided by ``narrow``); video id -> T. Rows repeat
    one random block per feature (the content does not matter to any timing here; nothing is compressed)."""
    rng = np.random.default_rng(seed)
    store = FeatureStore(str(location), mode="a")
    widths = {name: max(1, dim // narrow) for name, (_, dim) in FEATURES.items()}
    blocks = {name: rng.standard_normal((4096, width), dtype=np.float32) for name, width in widths.items()}
    lengths = {}
    for index, n_frames in enumerate(video_lengths(n_videos, rng)):
        vid = f"video_{index:04d}"
        n_frames = int(n_frames)
        video = store.create_video(vid, {"source_name": f"{vid}.mp4", "source_size_bytes": 0, "source_sha256": "",
                                         "n_frames": n_frames, "width": 640, "height": 360, "fps": FPS,
                                         "duration_s": n_frames / FPS})
        video.write("frame_time", np.arange(n_frames) / FPS, {"per_frame": True, "provenance": PROVENANCE})
        for name, (modality, _) in FEATURES.items():
            video.write(f"{modality}_valid", np.ones(n_frames, bool), {"per_frame": True, "provenance": PROVENANCE})
            block = blocks[name]
            rows = (block[: min(len(block), n_frames - start)] for start in range(0, n_frames, len(block)))
            video.write_blocks(name, (n_frames, widths[name]), np.dtype(np.float32), rows,
                               {"per_frame": True, "validity": f"{modality}_valid",
                                "provenance": {**PROVENANCE, "feature": name}})
        video.set_complete(True)
        lengths[vid] = n_frames
    return lengths


def timed_command(*args: str) -> float:
    """Seconds a ``python -m features_store`` command takes as a whole process (start-up included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "features_store", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def store_bytes(location: Path) -> int:
    return sum(path.stat().st_size for path in location.rglob("*") if path.is_file())


def raw_read_seconds(location: Path) -> float:
    """Seconds to read every chunk file of the store's features once, in 8 MB reads (the disk's speed here)."""
    buffer = bytearray(8 << 20)
    started = time.perf_counter()
    for path in location.glob("videos/*/*/c/**/*"):
        if path.is_file():
            with path.open("rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass
    return time.perf_counter() - started


def bench_metadata(workdir: Path, counts: list[int], narrow: int) -> None:
    for n_videos in counts:
        location = workdir / f"narrow_{n_videos}.zarr"
        started = time.perf_counter()
        lengths = generate(location, n_videos, narrow)
        generate_s = time.perf_counter() - started
        started = time.perf_counter()
        FeatureStore(str(location), mode="a").consolidate()
        consolidate_s = time.perf_counter() - started
        emit(bench="scale_store", videos=n_videos, frames=sum(lengths.values()), feature_widths_divided_by=narrow,
             gigabytes=round(store_bytes(location) / 1e9, 2), generate_s=round(generate_s, 1),
             info_s=round(timed_command("info", str(location)), 2), ls_s=round(timed_command("ls", str(location)), 2),
             consolidate_s=round(consolidate_s, 2), verify_s=round(timed_command("verify", str(location)), 2),
             info_target_s=5.0)
        shutil.rmtree(location)


def window_rate(store: FeatureStore, video_ids: list[str], in_memory: bool, standardiser=None) -> tuple[float, object]:
    """Windows/s assembling shuffled training batches over ``video_ids``, and the standardiser (fitted once)."""
    from train.features import StoreFeatures
    from train.windows import WindowBatches, WindowConfig

    features = StoreFeatures(store, list(FEATURES), video_ids, in_memory=in_memory)
    if standardiser is None:
        standardiser = features.fit_standardiser(video_ids)
    else:
        features.use_standardiser(standardiser)
    labels = {vid: {"va": np.zeros((features.n_frames[vid], 2), np.float32)} for vid in video_ids}
    masks = {vid: {"va": np.ones(features.n_frames[vid], bool)} for vid in video_ids}
    loader = WindowBatches(features, video_ids, WindowConfig(WINDOW_FRAMES, WINDOW_FRAMES), BATCH, labels=labels,
                           label_masks=masks, shuffle=True)
    sum(len(batch.windows) for batch in loader.batches(epoch=1))  # the subset into the page cache, as RAM is
    started = time.perf_counter()
    windows = sum(len(batch.windows) for batch in loader.batches())
    return windows / (time.perf_counter() - started), standardiser


def bench_full(workdir: Path, n_videos: int, subset_videos: int = 24) -> None:
    location = workdir / "full.zarr"
    started = time.perf_counter()
    lengths = generate(location, n_videos, narrow=1)
    gigabytes = store_bytes(location) / 1e9
    emit(bench="scale_generate", videos=n_videos, frames=sum(lengths.values()), gigabytes=round(gigabytes, 1),
         seconds=round(time.perf_counter() - started, 1))
    raw_s = raw_read_seconds(location)
    verify_s = timed_command("verify", str(location))
    emit(bench="scale_verify", videos=n_videos, gigabytes=round(gigabytes, 1), verify_s=round(verify_s, 1),
         verify_gb_per_s=round(gigabytes / verify_s, 2), raw_read_gb_per_s=round(gigabytes / raw_s, 2),
         ratio_verify_over_raw=round(raw_s / verify_s, 2))
    store = FeatureStore(str(location))
    subset = sorted(lengths)[:subset_videos]
    chunkwise, standardiser = window_rate(store, subset, in_memory=False)
    in_ram, _ = window_rate(store, subset, in_memory=True, standardiser=standardiser)
    emit(bench="scale_training", videos=len(subset), frames=sum(lengths[v] for v in subset),
         window_frames=WINDOW_FRAMES, batch=BATCH, chunkwise_windows_per_s=round(chunkwise, 1),
         ram_windows_per_s=round(in_ram, 1), ratio_chunkwise_over_ram=round(chunkwise / in_ram, 2), target_ratio=0.5)
    shutil.rmtree(location)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where the generated stores go (default: a temporary folder)")
    parser.add_argument("--videos", default="100,548,2000", help="video counts of the metadata series")
    parser.add_argument("--narrow", type=int, default=16, help="feature widths divided by this in that series")
    parser.add_argument("--full-videos", type=int, default=AFFWILD2_VIDEOS,
                        help="videos of the full-width store (548: Aff-Wild2, 33 GB; 0: skip it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        bench_metadata(Path(workdir), [int(n) for n in args.videos.split(",")], args.narrow)
        if args.full_videos:
            bench_full(Path(workdir), args.full_videos)
    return 0


if __name__ == "__main__":
    sys.exit(main())
