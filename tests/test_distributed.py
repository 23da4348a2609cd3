"""Extraction on dask: a local cluster (``workers=2``) and a scheduler with two workers on 127.0.0.1 give the arrays
of a serial run; a broken video fails alone; each worker builds the extractors once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extract.run import run_extraction
from features_store import FeatureStore

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
FEATURES = ["logmel", "face_crop", "fer", "words", "bert"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """The GRID sample twice (as two videos) and a file that is not a video."""
    folder = tmp_path_factory.mktemp("videos")
    shutil.copy(SAMPLES / "grid_id2_vcd_swwp2s.mpg", folder / "grid_a.mpg")
    shutil.copy(SAMPLES / "grid_id2_vcd_swwp2s.mpg", folder / "grid_b.mpg")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    return folder


@pytest.fixture(scope="module")
def serial_store(videos, tmp_path_factory) -> FeatureStore:
    """The serial run, with one thread as dask workers have (other thread counts change floats by ~1e-3)."""
    location = str(tmp_path_factory.mktemp("stores") / "serial.zarr")
    threads = torch.get_num_threads()
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # Whisper's threads follow it, as on a dask worker
    torch.set_num_threads(1)
    try:
        report = run_extraction([videos], location, FEATURES, progress=False)
    finally:
        torch.set_num_threads(threads)
        monkeypatch.undo()
    assert sorted(report.extracted) == ["grid_a", "grid_b"] and len(report.failed) == 1
    return FeatureStore(location)


def assert_same_words(expected: list[dict], actual: list[dict]) -> None:
    """Equal words; confidences within 0.005: CTranslate2's OpenMP reads OMP_NUM_THREADS when the process starts, so
    the serial run in this process keeps its thread count there, and Whisper's word probabilities move by ~1e-3."""
    assert [{**word, "conf": None} for word in actual] == [{**word, "conf": None} for word in expected]
    np.testing.assert_allclose([w["conf"] for w in actual], [w["conf"] for w in expected], rtol=0, atol=5e-3)


def assert_same_arrays(expected: FeatureStore, actual: FeatureStore) -> None:
    assert actual.video_ids() == expected.video_ids() == ["grid_a", "grid_b"]
    for video_id in expected.video_ids():
        a, b = expected.video(video_id), actual.video(video_id)
        assert a.array_names() == b.array_names() and b.complete
        assert_same_words(a.attrs["words"], b.attrs["words"])
        for name in a.array_names():
            np.testing.assert_allclose(b.read(name).astype(np.float64), a.read(name).astype(np.float64),
                                       rtol=0, atol=1e-4, err_msg=f"{video_id}/{name}")


def test_local_cluster_of_two_workers(videos, serial_store, tmp_path):
    location = str(tmp_path / "workers.zarr")
    report = run_extraction([videos], location, FEATURES, progress=False, workers=2)
    assert sorted(report.extracted) == ["grid_a", "grid_b"]
    assert list(report.failed) == [str(videos / "broken.mp4")]  # isolated, reported with its path
    assert_same_arrays(serial_store, FeatureStore(location))
    again = run_extraction([videos], location, FEATURES, progress=False, workers=2)  # resume: nothing to redo
    assert sorted(again.skipped) == ["grid_a", "grid_b"]


def test_existing_scheduler_with_two_workers_on_loopback(videos, serial_store, tmp_path):
    from distributed import Client, LocalCluster

    from extract.distributed import worker_extractor_builds

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        location = str(tmp_path / "scheduler.zarr")
        report = run_extraction([videos], location, FEATURES, progress=False, scheduler=cluster.scheduler_address)
        assert sorted(report.extracted) == ["grid_a", "grid_b"] and len(report.failed) == 1
        with Client(cluster.scheduler_address) as client:
            builds = client.run(worker_extractor_builds)  # three tasks on two workers: at most one build each
        assert len(builds) == 2 and all(count <= 1 for count in builds.values()) and sum(builds.values()) >= 1
    assert_same_arrays(serial_store, FeatureStore(location))
