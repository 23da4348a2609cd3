"""End to end: the extraction CLI and runner write complete, verifiable stores; failures, collisions, resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, SAMPLES
from extract.audio import LogMel, LogMelConfig, Mel64
from extract.run import Extraction, ExtractionError
from features_store import FeatureStore
from features_store.verify import verify_store
from media_factory import decoded_frame_times


def run_cli(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_info_lists_samples_complete_with_decoder_timeline(sample_store):
    result = run_cli("features_store", "info", sample_store.location, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    sample_files = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".mp4", ".mpg"})
    assert sorted(v["source"]["name"] for v in info["videos"].values()) == [p.name for p in sample_files]
    for path in sample_files:
        video_id = path.stem
        entry = info["videos"][video_id]
        times = decoded_frame_times(path)
        n_frames = len(times)
        assert entry["complete"] is True and entry["T"] == n_frames
        np.testing.assert_array_equal(sample_store.video(video_id).read("frame_time"), times)
        features = entry["features"]
        assert features["logmel"]["shape"] == [n_frames, 200]
        assert features["mfcc_mel"]["shape"] == [n_frames, 168]
        n_rows = features["mel64"]["shape"][0]
        assert features["mel64"]["shape"] == [n_rows, 64] and n_rows > 90 * entry["duration_s"]
        assert entry["arrays"]["mel64_time"]["shape"] == [n_rows]
        assert entry["arrays"]["mel64_row"]["shape"] == [n_frames]
        assert sorted(features["mel64"]["arrays"]) == ["mel64", "mel64_row", "mel64_time", "mel64_valid"]
        provenance = features["logmel"]["provenance"]
        assert provenance["parameters"]["n_mels"] == 40 and provenance["libraries"]["librosa"]
    assert run_cli("features_store", "verify", sample_store.location).returncode == 0


def test_verify_catches_an_inconsistent_store(sample_store, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(sample_store.location, copy)
    store = FeatureStore(str(copy), mode="a")
    video = store.video(store.video_ids()[0])
    logmel = video.read("logmel")
    logmel[0] += 1.0
    video.write("audio_valid", np.zeros(video.n_frames, bool), dict(video.array("audio_valid").attrs))
    result = run_cli("features_store", "verify", str(copy))
    assert result.returncode == 1
    assert "non-zero rows where audio_valid is false" in result.stdout


def test_failed_video_is_one_line_and_others_complete(tmp_path, silent_video):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(silent_video, inputs / "no audio.mp4")
    shutil.copy(SAMPLES / "grid_id2_vcd_swwp2s.mpg", inputs)
    broken = inputs / "broken.mp4"
    broken.write_bytes(b"\x00\x01 definitely not a video" * 100)
    store = tmp_path / "s.zarr"
    result = run_cli("extract", str(inputs), "--store", str(store), "--no-progress")
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1 and str(broken) in failures[0] and "cannot open as a video" in failures[0]
    opened = FeatureStore(str(store))
    assert opened.video_ids() == ["grid_id2_vcd_swwp2s", "no_audio"]  # sanitised id of "no audio.mp4"
    silent = opened.video("no_audio")
    assert silent.complete and silent.attrs["audio_reason"] == "no audio stream in file"
    assert silent.attrs["audio_offset_s"] is None
    assert not silent.read("audio_valid").any()
    for name in ("logmel", "mfcc_mel", "mel64"):
        assert not silent.read(name).any()
    assert silent.read("logmel").shape == (45, 200)
    assert verify_store(opened) == {}


def test_two_inputs_with_one_id_stop_before_any_work(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(SAMPLES / "grid_id2_vcd_swwp2s.mpg", tmp_path / folder / "clip.mpg")
    store = tmp_path / "s.zarr"
    result = run_cli("extract", str(tmp_path / "a"), str(tmp_path / "b"), "--store", str(store))
    assert result.returncode == 2
    assert str(tmp_path / "a" / "clip.mpg") in result.stderr and str(tmp_path / "b" / "clip.mpg") in result.stderr
    assert not store.exists()


def test_new_features_are_added_and_changed_parameters_need_overwrite(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    video = SAMPLES / "grid_id2_vcd_swwp2s.mpg"
    assert Extraction(store, [LogMel()]).run([video], progress=False).extracted == ["grid_id2_vcd_swwp2s"]
    report = Extraction(store, [LogMel(), Mel64()]).run([video], progress=False)
    assert report.extracted == ["grid_id2_vcd_swwp2s"]
    assert {"logmel", "mel64"} <= set(store.video("grid_id2_vcd_swwp2s").array_names())
    assert Extraction(store, [LogMel(), Mel64()]).run([video], progress=False).skipped == ["grid_id2_vcd_swwp2s"]

    other = LogMel(LogMelConfig(n_mels=64))
    with pytest.raises(ExtractionError, match="another version or parameters"):
        Extraction(store, [other]).extract_one("grid_id2_vcd_swwp2s", video)
    Extraction(store, [other], overwrite=True).run([video], progress=False)
    group = store.video("grid_id2_vcd_swwp2s")
    assert group.complete and group.array("logmel").shape == (75, 320)


def test_ids_collide_case_insensitively(tmp_path):
    from extract.run import VideoIdCollision, assign_video_ids
    with pytest.raises(VideoIdCollision, match="Clip.mp4"):
        assign_video_ids([tmp_path / "a" / "Clip.mp4", tmp_path / "b" / "clip.mp4"])


def test_consolidated_metadata_matches_the_store_after_a_run(tmp_path):
    import zarr
    location = tmp_path / "s.zarr"
    store = FeatureStore(str(location), mode="a")
    video = SAMPLES / "grid_id2_vcd_swwp2s.mpg"
    Extraction(store, [LogMel()]).run([video], progress=False)
    store.begin_writing("2026-01-01T00:00:00+00:00")  # a later run starts: the consolidated copy is dropped
    assert "consolidated_metadata" not in json.loads((location / "zarr.json").read_text()) or \
        json.loads((location / "zarr.json").read_text())["consolidated_metadata"] is None
    Extraction(store, [LogMel(), Mel64()]).run([video], progress=False)
    consolidated = zarr.open_group(str(location), mode="r")  # what a remote consumer sees
    group = consolidated["videos/grid_id2_vcd_swwp2s"]
    assert group.attrs["complete"] is True and "mel64" in group
