"""Runs that die and runs that share a store: kill -9 at several points then resume, two writers at once, claims."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from conftest import REPO_ROOT, SAMPLES
from features_store import FeatureStore
from features_store.claims import Claimant, Claims
from features_store.verify import verify_store, verify_video

FEATURES = "logmel,face_crop,fer"  # fer reads the stored face_crop: a dependant, as in real runs


def extract_command(inputs: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "extract", str(inputs), "--store", str(store), "--features", FEATURES,
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def grid_inputs(tmp_path_factory) -> Path:
    """Three copies of the GRID clip (3 s, a face in every frame) under different names."""
    inputs = tmp_path_factory.mktemp("inputs")
    for index in range(3):
        shutil.copy(SAMPLES / "grid_id2_vcd_swwp2s.mpg", inputs / f"grid{index}.mpg")
    return inputs


@pytest.fixture(scope="module")
def reference(grid_inputs, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """Every array of an uninterrupted run, per video."""
    store = tmp_path_factory.mktemp("reference") / "s.zarr"
    result = subprocess.run(extract_command(grid_inputs, store), cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return read_all(FeatureStore(str(store)))


def read_all(store: FeatureStore, complete_only: bool = False) -> dict[str, dict[str, np.ndarray]]:
    return {video_id: {name: store.video(video_id).read(name) for name in store.video(video_id).array_names()}
            for video_id in store.video_ids() if store.video(video_id).complete or not complete_only}


def assert_same_arrays(found: dict[str, np.ndarray], expected: dict[str, np.ndarray], where: str) -> None:
    assert sorted(found) == sorted(expected), where
    for name, data in expected.items():
        assert found[name].dtype == data.dtype and found[name].shape == data.shape, f"{where}/{name}"
        if data.dtype.kind == "f":
            np.testing.assert_allclose(found[name], data, rtol=0, atol=1e-5, err_msg=f"{where}/{name}")
        else:
            np.testing.assert_array_equal(found[name], data, err_msg=f"{where}/{name}")


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _complete(store: Path, video_id: str) -> bool:
    return (_json(store / "videos" / video_id / "zarr.json") or {}).get("attributes", {}).get("complete") is True


KILL_POINTS = {  # moment -> condition on the store directory, polled every 2 ms
    "store created, first video decoding": lambda s: (s / "zarr.json").exists(),
    "first group created": lambda s: (s / "videos" / "grid0" / "zarr.json").exists(),
    "face_crop being written": lambda s: (s / "videos" / "grid0" / "face_crop" / "zarr.json").exists(),
    "fer being written": lambda s: (s / "videos" / "grid0" / "fer" / "zarr.json").exists(),
    "first video complete": lambda s: _complete(s, "grid0"),
    "second video's group created": lambda s: (s / "videos" / "grid1" / "zarr.json").exists(),
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(KILL_POINTS))
def test_kill_at_any_point_then_rerun_equals_an_uninterrupted_run(moment, grid_inputs, reference, tmp_path):
    store = tmp_path / "s.zarr"
    process = subprocess.Popen(extract_command(grid_inputs, store), cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    condition = KILL_POINTS[moment]
    deadline = time.monotonic() + 300
    while process.poll() is None and not condition(store) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert process.poll() is None, f"the run ended before {moment}"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    killed = FeatureStore(str(store))  # the store opens after any kill, and no partial group claims completeness
    info = subprocess.run([sys.executable, "-m", "features_store", "info", str(store), "--json"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    claims = json.loads(info.stdout)["claims"]  # the dead run's claims are shown, as stale
    assert all(c["stale"] and c["pid"] == process.pid for c in claims), claims
    assert claims or moment in ("store created, first video decoding", "first video complete")
    for video_id, arrays in read_all(killed, complete_only=True).items():
        assert verify_video(killed.video(video_id)) == []
        assert_same_arrays(arrays, reference[video_id], f"{moment}: complete {video_id}")
    assert not all(killed.video(v).complete for v in killed.video_ids()) or len(killed.video_ids()) < 3

    rerun = subprocess.run(extract_command(grid_inputs, store), cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=600)  # the dead run's claims are stale at once: its pid is gone
    assert rerun.returncode == 0, rerun.stderr
    resumed = FeatureStore(str(store))
    assert verify_store(resumed) == {} and resumed.failures() == []
    found = read_all(resumed)
    assert sorted(found) == sorted(reference)
    for video_id in reference:
        assert_same_arrays(found[video_id], reference[video_id], f"{moment}: rerun {video_id}")
    assert not (store / ".claims").exists() or not any((store / ".claims").glob("*.json"))


def _summary(stderr: str) -> tuple[int, int]:
    match = re.search(r"(\d+) extracted, (\d+) already complete", stderr)
    assert match, stderr
    return int(match[1]), int(match[2])


@pytest.mark.slow
def test_two_writers_on_one_store_extract_each_video_once(tmp_path):
    inputs_a, inputs_b = tmp_path / "a", tmp_path / "b"
    inputs_a.mkdir(), inputs_b.mkdir()
    names = [f"clip{i}.mpg" for i in range(6)]
    for name in names[:4]:  # overlapping lists: clip2 and clip3 are in both
        shutil.copy(SAMPLES / "grid_id2_vcd_swwp2s.mpg", inputs_a / name)
    for name in names[2:]:
        shutil.copy(SAMPLES / "grid_id2_vcd_swwp2s.mpg", inputs_b / name)
    store = tmp_path / "shared.zarr"
    features = ["--features", "logmel,face_crop"]
    writers = [subprocess.Popen([sys.executable, "-m", "extract", str(inputs), "--store", str(store), *features,
                                 "--no-progress"], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
               for inputs in (inputs_a, inputs_b)]
    outputs = [writer.communicate(timeout=600)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    (extracted_a, skipped_a), (extracted_b, skipped_b) = map(_summary, outputs)
    assert extracted_a + skipped_a == 4 and extracted_b + skipped_b == 4
    assert extracted_a + extracted_b == 6  # each video written once, by one of them

    shared = FeatureStore(str(store))
    assert verify_store(shared) == {} and shared.video_ids() == [f"clip{i}" for i in range(6)]
    writer_of = {v: shared.video(v).attrs["extracted_by"]["pid"] for v in shared.video_ids()}
    assert {writer_of[f"clip{i}"] for i in (0, 1)} == {writers[0].pid}
    assert {writer_of[f"clip{i}"] for i in (4, 5)} == {writers[1].pid}
    assert sum(pid == writers[0].pid for pid in writer_of.values()) == extracted_a
    assert shared.failures() == [] and not any((store / ".claims").glob("*.json"))
    first = shared.video("clip0")
    for video_id in shared.video_ids():  # the same clip, so the same arrays, whoever wrote them
        for name in ("logmel", "face_crop", "face_valid"):
            np.testing.assert_array_equal(shared.video(video_id).read(name), first.read(name))


@pytest.fixture
def claims(tmp_path) -> Claims:
    return FeatureStore(str(tmp_path / "s.zarr"), mode="a").claims


def _plant(claims: Claims, name: str, claimant: Claimant) -> None:
    path = Path(str(claims.zarr_store.root)) / ".claims" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(claimant.__dict__))


def _claimant(host: str, pid: int, started_s: float, heartbeat_s: float) -> Claimant:
    return Claimant(host, pid, started_s, "other-token", "2026-11-22T00:00:00Z", heartbeat_s)


def test_a_claim_of_a_live_process_holds_and_frees_when_it_dies(claims):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _plant(claims, "v1", _claimant(socket.gethostname(), sleeper.pid, psutil.Process(sleeper.pid).create_time(),
                                       time.time() - 3600))  # an old heartbeat does not matter on this host
        assert claims.try_claim("v1") is None and claims.holder("v1").pid == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert claims.holder("v1") is None  # its process is gone: stale at once
    assert claims.try_claim("v1").pid == os.getpid()
    claims.release("v1")
    assert claims.read("v1") is None


def test_a_reused_pid_does_not_hold_a_claim(claims):
    _plant(claims, "v1", _claimant(socket.gethostname(), os.getpid(), 12345.0, time.time()))
    assert claims.try_claim("v1") is not None  # this pid is alive, but it is not the process that claimed


def test_another_hosts_claim_is_stale_only_after_its_heartbeat_lapses(claims):
    now = time.time()
    _plant(claims, "v1", _claimant("some-other-host", 4242, 0.0, now - claims.stale_after_s / 2))
    assert claims.try_claim("v1") is None and claims.holder("v1").host == "some-other-host"
    _plant(claims, "v1", _claimant("some-other-host", 4242, 0.0, now - claims.stale_after_s - 1))
    assert claims.holder("v1") is None and claims.try_claim("v1") is not None
    assert not claims.lost("v1")
    _plant(claims, "v1", _claimant("some-other-host", 4242, 0.0, now))  # taken over behind our back
    assert claims.lost("v1")


def test_a_second_claim_from_this_process_waits_for_the_first(claims):
    assert claims.try_claim("v2") is not None
    assert claims.try_claim("v2") is None  # claims are per group, not re-entrant for videos
    claims.release("v2")
    assert claims.try_claim("v2") is not None


def test_heartbeats_refresh_held_claims(tmp_path):
    claims = Claims(FeatureStore(str(tmp_path / "s.zarr"), mode="a").root.store, stale_after_s=0.4)
    first = claims.try_claim("v1")
    time.sleep(0.35)
    assert claims.read("v1").heartbeat_s > first.heartbeat_s and claims.read("v1").token == first.token
    claims.release("v1")
    time.sleep(0.25)  # the heartbeat never writes a released claim back
    assert claims.read("v1") is None


def _rewrite_metadata(array_dir: Path, change) -> None:
    metadata = json.loads((array_dir / "zarr.json").read_text())
    change(metadata)
    (array_dir / "zarr.json").write_text(json.dumps(metadata))


def test_verify_reports_every_kind_of_damage_and_never_runs_stored_code(sample_store, tmp_path, capfd):
    copy = tmp_path / "damaged.zarr"
    shutil.copytree(sample_store.location, copy)
    crema, grid = (copy / "videos" / v for v in sorted(FeatureStore(str(copy)).video_ids()))
    assert "manifest" in FeatureStore(str(copy)).video(crema.name).attrs
    shutil.rmtree(crema / "fer")  # a lost array
    face_chunks = sorted((crema / "face_crop" / "c").rglob("*"))
    next(p for p in face_chunks if p.is_file()).unlink()  # a lost chunk (all-zero chunks are stored too)
    logmel_chunk = next(p for p in sorted((crema / "logmel" / "c").rglob("*")) if p.is_file())
    logmel_chunk.write_bytes(logmel_chunk.read_bytes()[:100])  # a truncated chunk
    store = FeatureStore(str(copy), mode="a")
    video = store.video(grid.name)
    video.write("mfcc_mel", video.read("mfcc_mel").astype(np.float64), dict(video.array("mfcc_mel").attrs))
    # another tool rewrote a validity array as bytes (affectsync's own writer refuses that: test_store_schema)
    video.group.create_array("audio_valid", data=video.read("audio_valid").astype(np.uint8), overwrite=True,
                             attributes=dict(video.array("audio_valid").attrs))
    _rewrite_metadata(grid / "logmel", lambda m: m["codecs"].insert(0, {"name": "numcodecs.pickle"}))
    _rewrite_metadata(grid / "bert", lambda m: m.update(data_type="float64"))  # metadata that lies about bytes

    result = subprocess.run([sys.executable, "-m", "features_store", "verify", str(copy)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    report = result.stdout
    for expected in (f"{crema.name}: fer: missing (the committed group has it)",
                     "face_crop: 1 of", "chunks missing",
                     f"{crema.name}: logmel: unreadable",
                     "mfcc_mel: float64", "but committed as float32",
                     "audio_valid: dtype uint8, expected bool",
                     f"{grid.name}: logmel:",
                     "bert: float64"):
        assert expected in report, (expected, report, result.stderr)

    _rewrite_metadata(grid, lambda m: m["attributes"].pop("complete"))  # the commit marker lost
    result = subprocess.run([sys.executable, "-m", "features_store", "verify", str(copy)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert "missing group attribute 'complete'" in result.stdout and "not complete" in result.stdout
    info = subprocess.run([sys.executable, "-m", "features_store", "info", str(copy)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)  # info describes the damage, not crash on it
    assert info.returncode == 0 and "logmel           " in info.stdout and "refused" in info.stdout, info.stderr


def test_row_blocks_of_any_size_are_written_whole_chunks_at_a_time(tmp_path):
    from features_store.store import StoreError

    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    video = store.create_video("v", {"n_frames": 138})
    rows = np.random.default_rng(0).integers(0, 255, (138, 112, 112, 3), dtype=np.uint8)
    sizes = [1, 30, 0, 100, 7]
    blocks = np.split(rows, np.cumsum(sizes)[:-1])
    video.write_blocks("face_crop", rows.shape, rows.dtype, iter(blocks), {"per_frame": True})
    stored = video.array("face_crop")
    assert stored.chunks[0] == 28 and stored.nchunks_initialized == stored.nchunks
    np.testing.assert_array_equal(stored[...], rows)
    with pytest.raises(StoreError, match="v/short: 137 rows were written, the array has 138"):
        video.write_blocks("short", rows.shape, rows.dtype, iter([rows[:137]]), {})


def test_temporary_files_a_killed_writer_left_are_removed_by_the_next_run(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    store.begin_writing("2026-01-01T00:00:00+00:00")
    old = [tmp_path / "s.zarr" / "zarr.0a1b.partial", tmp_path / "s.zarr" / "videos" / "zarr.2c3d.partial"]
    fresh = tmp_path / "s.zarr" / "videos" / "zarr.4e5f.partial"  # another writer's, being written now
    for path in [*old, fresh]:
        path.write_bytes(b"{")
    for path in old:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    FeatureStore(str(tmp_path / "s.zarr"), mode="a").begin_writing("2026-01-01T00:00:01+00:00")
    assert not any(path.exists() for path in old) and fresh.exists()
