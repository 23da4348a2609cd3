"""Sharing stores: merge (and its refusal), diff, HDF5 round trip, .npy import and read-only opening, on copies of
the real sample store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from features_store import FeatureStore
from features_store.__main__ import main as store_main
from features_store.interop import InteropError, diff, export_h5, import_h5, import_npy, merge
from features_store.verify import verify_video

CREMA, GRID = "crema_d_1001_DFA_concat", "grid_id2_vcd_swwp2s"


def copy_of(store: FeatureStore, path: Path) -> FeatureStore:
    shutil.copytree(store.location, path)
    return FeatureStore(str(path), mode="a")


def assert_same_videos(a: FeatureStore, b: FeatureStore) -> None:
    """Every group attribute, array (dtype, shape, values) and array attribute equal."""
    assert a.video_ids() == b.video_ids()
    for video_id in a.video_ids():
        va, vb = a.video(video_id), b.video(video_id)
        assert va.attrs == vb.attrs
        assert va.array_names() == vb.array_names()
        for name in va.array_names():
            x, y = va.array(name), vb.array(name)
            assert x.dtype == y.dtype and x.shape == y.shape, name
            np.testing.assert_array_equal(x[...], y[...], err_msg=name)
            assert dict(x.attrs) == dict(y.attrs), name


def test_hdf5_round_trip_is_exact(sample_store, tmp_path, capsys):
    h5 = tmp_path / "sample.h5"
    assert store_main(["export-h5", sample_store.location, str(h5)]) == 0
    assert store_main(["import-h5", str(h5), str(tmp_path / "back.zarr")]) == 0
    back = FeatureStore(str(tmp_path / "back.zarr"))
    assert_same_videos(sample_store, back)
    assert isinstance(back.video(CREMA).attrs["words"], list)  # nested JSON survives HDF5
    import h5py

    with h5py.File(h5) as f:  # an HDF5 user sees the same layout
        assert f["videos"][CREMA]["logmel"].shape == sample_store.video(CREMA).array("logmel").shape
        assert json.loads(f["videos"][CREMA]["logmel"].attrs["provenance"])["feature"] == "logmel"
    capsys.readouterr()
    assert store_main(["import-h5", str(h5), str(tmp_path / "back.zarr")]) == 2  # ids taken: refused
    assert "already holds" in capsys.readouterr().err


def test_merge_makes_the_union(sample_store, tmp_path):
    a = copy_of(sample_store, tmp_path / "a.zarr")
    a.delete_video(GRID)
    a.video(CREMA).delete("bert")
    b = copy_of(sample_store, tmp_path / "b.zarr")
    b.delete_video(CREMA)
    a_only = copy_of(sample_store, tmp_path / "a_bert.zarr")  # bert of CREMA, alone
    a_only.delete_video(GRID)
    plan = merge([a.location, b.location, a_only.location], str(tmp_path / "c.zarr"))
    assert len(plan.new_videos) == 2 and [name for *_, name in plan.new_arrays] == ["bert"]
    merged = FeatureStore(str(tmp_path / "c.zarr"))
    assert_same_videos(sample_store, merged)
    assert all(verify_video(merged.video(v)) == [] for v in merged.video_ids())
    assert diff(sample_store, merged)["identical"]


def test_merge_with_a_provenance_conflict_changes_nothing(sample_store, tmp_path, capsys):
    target = copy_of(sample_store, tmp_path / "target.zarr")
    target.video(GRID).delete("mfcc_mel")
    other = copy_of(sample_store, tmp_path / "other.zarr")
    logmel = other.video(CREMA).array("logmel")
    provenance = dict(logmel.attrs["provenance"])
    provenance["parameters"] = {**provenance["parameters"], "n_mels": 64}
    logmel.attrs["provenance"] = provenance
    before = {path: path.read_bytes() for path in (tmp_path / "target.zarr").rglob("*") if path.is_file()}
    code = store_main(["merge", other.location, "--into", target.location])
    error = capsys.readouterr().err
    assert code == 2
    assert f"{CREMA}/logmel: provenance differs between {target.location} and {other.location} (parameters)" in error
    after = {path: path.read_bytes() for path in (tmp_path / "target.zarr").rglob("*") if path.is_file()}
    assert after == before  # not even the missing mfcc_mel of the other video was added


def test_diff_names_content_and_provenance_changes(sample_store, tmp_path, capsys):
    other = copy_of(sample_store, tmp_path / "other.zarr")
    video = other.video(GRID)
    changed = video.read("logmel")
    changed[3] += 1.0
    video.write("logmel", changed, dict(video.array("logmel").attrs))
    video.delete("fer")
    report = diff(sample_store, other)
    assert report["videos"][GRID]["content_differs"] == ["logmel"]
    assert report["videos"][GRID]["only_in_a"] == ["fer"] and not report["videos"][GRID]["provenance_differs"]
    assert CREMA not in report["videos"] and not report["identical"]
    assert store_main(["diff", sample_store.location, other.location]) == 1
    assert json.loads(capsys.readouterr().out)["videos"][GRID]["content_differs"] == ["logmel"]


def test_import_npy_folders(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "abaw_features"
    for video, n in (("video1", 50), ("video2", 30)):
        (folder / video).mkdir(parents=True)
        np.save(folder / video / "vggish.npy", rng.normal(size=(n, 128)).astype(np.float32))
        np.save(folder / video / "bert.npy", rng.normal(size=(n, 768)).astype(np.float32))
    np.save(folder / "video1" / "frame_time.npy", np.cumsum(rng.uniform(0.03, 0.04, 50)))
    with pytest.raises(InteropError, match="video2: no frame_time.npy; give --fps"):
        import_npy(folder, str(tmp_path / "s.zarr"))
    assert not (tmp_path / "s.zarr").exists() or not FeatureStore(str(tmp_path / "s.zarr")).video_ids()
    assert store_main(["import-npy", str(folder), str(tmp_path / "s.zarr"), "--fps", "30"]) == 0
    store = FeatureStore(str(tmp_path / "s.zarr"))
    assert store.video_ids() == ["video1", "video2"]
    for video_id in store.video_ids():
        video = store.video(video_id)
        assert verify_video(video) == []
        np.testing.assert_array_equal(video.read("vggish"), np.load(folder / video_id / "vggish.npy"))
        assert len(video.array("bert").attrs["provenance"]["source_file"]["sha256"]) == 64
    np.testing.assert_array_equal(store.video("video2").read("frame_time"), np.arange(30) / 30)
    assert "fps = 30" in store.video("video2").array("frame_time").attrs["provenance"]["source_file"]["derived"]
    np.save(folder / "video1" / "bert.npy", np.zeros((49, 768), np.float32))
    with pytest.raises(InteropError, match="disagree on the number of frames"):
        import_npy(folder, str(tmp_path / "t.zarr"))


def test_read_only_store_cannot_be_modified(sample_store):
    store = FeatureStore(sample_store.location, mode="r")
    video = store.video(GRID)
    with pytest.raises(ValueError, match="read-only"):  # zarr refuses every write through a read-only store
        video.write("extra", np.zeros(3), {})
    with pytest.raises(ValueError, match="read-only"):
        video.group.attrs["complete"] = False
    with pytest.raises(ValueError, match="read-only"):
        video.array("logmel")[0] = 0
    assert "extra" not in FeatureStore(sample_store.location).video(GRID).array_names()
    assert zarr.open_group(sample_store.location, mode="r")[f"videos/{GRID}"].attrs["complete"] is True


def test_consumer_needs_no_extractors(sample_store):
    """Open, verify, list and read (numpy and dask) in a fresh interpreter: no extractor, torch, PyAV or librosa is
    imported on the way."""
    import subprocess
    import sys

    script = f"""
import sys, features_store
from features_store.verify import verify_store
store = features_store.open({sample_store.location!r})
assert verify_store(store) == {{}}
video = store.video({GRID!r})
assert video.dask("logmel").shape == video.read("logmel").shape
whole = store.dask("logmel")
assert whole.shape[0] == sum(store.complete_n_frames().values())
assert abs(float(whole.mean().compute()) - float(sum(store.video(v).read("logmel").sum() for v in store.video_ids())
           / whole.size)) < 1e-3
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"extract", "train", "torch", "av", "librosa", "transformers"}})
print("LOADED", loaded)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "LOADED []" in result.stdout, result.stdout + result.stderr
