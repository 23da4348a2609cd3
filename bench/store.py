"""Benchmark: reading a feature from the store vs the formats teams use today, and extraction on 1 vs 2 workers.

Prints one JSON object per line (``make bench``):

- ``store_read``: an (18000, 1408) float32 feature (design.md's case) read whole by affectsync
  (:func:`features_store.reading.read_rows`), by zarr's own path, from a ``.npy`` file of the same data (the ABAW teams'
  format) and from an uncompressed HDF5 dataset; GB/s and ratios (target: affectsync over ``np.load`` at least 0.8).
- ``store_windows``: 300-row windows at random starts of the same feature, read by affectsync, by zarr, and sliced
  from the ``.npy`` file memory-mapped (``np.load(mmap_mode="r")``, copied); windows/s and ratios (target 0.8).
- ``float16_storage``: each float feature of the offline defaults extracted from the GRID sample stored as float32 and
  as float16 (``--set FEATURE.dtype=float16``): the largest absolute error, the error's RMS relative to the values'
  RMS, and the bytes saved.
- ``workers``: the same videos (copies of the GRID sample) extracted on a local dask cluster of 1 and of 2 worker
  processes (cluster start-up included), and the speed-up.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.audio import REPO_ROOT
from bench.results import best_seconds_interleaved, emit
from features_store.reading import read_rows
from features_store.store import FeatureStore

WORKER_FEATURES = ["logmel", "mfcc_mel", "face_crop", "words"]
WORKER_VIDEOS = 6
FLOAT_FEATURES = ["logmel", "mfcc_mel", "mel64", "fer", "bert"]
WINDOW_ROWS = 300
WINDOWS = 400


def bench_store_read(workdir: Path, n_frames: int = 18_000, dim: int = 1408) -> None:
    import h5py

    data = np.random.default_rng(0).standard_normal((n_frames, dim), dtype=np.float32)
    np.save(workdir / "feature.npy", data)
    with h5py.File(workdir / "feature.h5", "w") as f:
        f.create_dataset("feature", data=data)
    FeatureStore(str(workdir / "read.zarr"), mode="a").create_video("read", {"n_frames": n_frames}).write(
        "feature", data, {})
    array = FeatureStore(str(workdir / "read.zarr")).video("read").array("feature")

    def read_h5():
        with h5py.File(workdir / "feature.h5", "r") as f:
            return f["feature"][...]

    os.sync()  # the files were just written: time reads, not the writeback competing with them
    gigabytes = data.nbytes / 1e9
    seconds = best_seconds_interleaved({"npy": lambda: np.load(workdir / "feature.npy"), "hdf5": read_h5,
                                        "zarr": lambda: array[...], "store": lambda: read_rows(array)})
    emit(bench="store_read", shape=[n_frames, dim], chunk_rows=array.chunks[0],
         **{f"{name}_gb_per_s": round(gigabytes / t, 2) for name, t in seconds.items()},
         ratio_store_over_npy=round(seconds["npy"] / seconds["store"], 2),
         ratio_zarr_over_npy=round(seconds["npy"] / seconds["zarr"], 2),
         ratio_store_over_hdf5=round(seconds["hdf5"] / seconds["store"], 2), target_ratio=0.8)

    starts = np.random.default_rng(1).integers(0, n_frames - WINDOW_ROWS, WINDOWS)
    mapped = np.load(workdir / "feature.npy", mmap_mode="r")
    seconds = best_seconds_interleaved({
        "npy_mmap": lambda: [np.array(mapped[s:s + WINDOW_ROWS]) for s in starts],
        "zarr": lambda: [array[s:s + WINDOW_ROWS] for s in starts],
        "store": lambda: [read_rows(array, s, s + WINDOW_ROWS) for s in starts],
    }, repeats=3)
    emit(bench="store_windows", window_rows=WINDOW_ROWS, windows=WINDOWS,
         **{f"{name}_windows_per_s": round(WINDOWS / t, 1) for name, t in seconds.items()},
         ratio_store_over_npy=round(seconds["npy_mmap"] / seconds["store"], 2),
         ratio_zarr_over_npy=round(seconds["npy_mmap"] / seconds["zarr"], 2), target_ratio=0.8)


def bench_float16(workdir: Path) -> None:
    from extract.run import run_extraction

    clip = REPO_ROOT / "samples" / "grid_id2_vcd_swwp2s.mpg"
    groups = {}
    for dtype in ("float32", "float16"):
        location = str(workdir / f"{dtype}.zarr")
        run_extraction([clip], location, FLOAT_FEATURES + ["face_crop", "words"], progress=False,
                       settings={feature: {"dtype": dtype} for feature in FLOAT_FEATURES})
        groups[dtype] = FeatureStore(location).video(clip.stem)
    for feature in FLOAT_FEATURES:
        exact = groups["float32"].read(feature).astype(np.float64)
        error = groups["float16"].read(feature).astype(np.float64) - exact
        emit(bench="float16_storage", feature=feature, shape=list(exact.shape),
             max_abs_value=float(np.abs(exact).max()), max_abs_error=float(np.abs(error).max()),
             relative_rms_error=float(np.sqrt(np.mean(error ** 2) / max(np.mean(exact ** 2), 1e-30))),
             bytes_ratio=groups["float16"].array(feature).nbytes / groups["float32"].array(feature).nbytes)


def bench_workers(workdir: Path) -> None:
    from extract.run import run_extraction

    videos = workdir / "videos"
    videos.mkdir()
    for k in range(WORKER_VIDEOS):
        shutil.copy(REPO_ROOT / "samples" / "grid_id2_vcd_swwp2s.mpg", videos / f"grid_{k}.mpg")
    seconds = {}
    for workers in (1, 2):
        start = time.perf_counter()
        report = run_extraction([videos], str(workdir / f"w{workers}.zarr"), WORKER_FEATURES, progress=False,
                                workers=workers)
        seconds[workers] = time.perf_counter() - start
        assert len(report.extracted) == WORKER_VIDEOS, report
    emit(bench="workers", videos=WORKER_VIDEOS, features=WORKER_FEATURES,
         one_worker_s=round(seconds[1], 2), two_workers_s=round(seconds[2], 2),
         speedup_two_over_one=round(seconds[1] / seconds[2], 2))


def main() -> int:
    with tempfile.TemporaryDirectory() as workdir:
        bench_store_read(Path(workdir))
        bench_float16(Path(workdir))
        bench_workers(Path(workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
