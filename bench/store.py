"""Benchmark: reading a feature from the store vs the formats teams use today, and extraction on 1 vs 2 workers.

Prints one JSON object per line (``make bench``):

- ``store_read``: an (18000, 1408) float32 feature (design.md's case) read whole from the zarr store, from a ``.npy``
  file of the same data (the ABAW teams' format) and from an uncompressed HDF5 dataset; GB/s and ratios.
- ``workers``: the same videos (copies of the GRID sample) extracted on a local dask cluster of 1 and of 2 worker
  processes (cluster start-up included), and the speed-up.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.audio import REPO_ROOT
from bench.results import best_seconds, emit
from features_store.store import FeatureStore

WORKER_FEATURES = ["logmel", "mfcc_mel", "face_crop", "words"]
WORKER_VIDEOS = 6


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

    gigabytes = data.nbytes / 1e9
    npy_s = best_seconds(lambda: np.load(workdir / "feature.npy"), repeats=5)
    h5_s = best_seconds(read_h5, repeats=5)
    zarr_s = best_seconds(lambda: array[...], repeats=5)
    emit(bench="store_read", shape=[n_frames, dim], npy_gb_per_s=round(gigabytes / npy_s, 2),
         hdf5_gb_per_s=round(gigabytes / h5_s, 2), zarr_gb_per_s=round(gigabytes / zarr_s, 2),
         ratio_zarr_over_npy=round(npy_s / zarr_s, 2), ratio_zarr_over_hdf5=round(h5_s / zarr_s, 2))


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
        bench_workers(Path(workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
