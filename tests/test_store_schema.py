"""Arrays that say their dimensions: every array of the sample store has a typed schema (kind, clock, column names as
lists) and Zarr v3 dimension names, so xarray opens each video group as a Dataset; stores written before the schema
stay readable and verifiable; settings that cannot lie."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from extract import registry
from extract.ingest import decode_video
from features_store import FeatureStore
from features_store.errors import UsageError
from features_store.schema import FRAME, ArraySchema
from features_store.store import StoreError
from features_store.verify import verify_store

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
EXPECTED_DIMS = {
    "frame_time": ("frame",),
    "audio_valid": ("frame",),
    "logmel": ("frame", "logmel_column"),
    "mel64": ("mel64_time", "mel64_column"),
    "mel64_time": ("mel64_time",),
    "mel64_valid": ("mel64_time",),
    "mel64_row": ("frame",),
    "face_crop": ("frame", "face_crop_y", "face_crop_x", "face_crop_channel"),
    "face_mask": ("frame", "face_mask_y", "face_mask_x"),
    "landmarks68": ("frame", "landmarks68_point", "landmarks68_xy"),
    "word_index": ("frame",),
    "bert": ("frame", "bert_column"),
}


def test_xarray_opens_every_video_group_with_its_dimensions(sample_store):
    for video_id in sample_store.video_ids():
        video = sample_store.video(video_id)
        dataset = xr.open_zarr(sample_store.location, group=f"videos/{video_id}")
        assert set(dataset.data_vars) | set(dataset.coords) == set(video.array_names())
        for name, dims in EXPECTED_DIMS.items():
            assert dataset[name].dims == dims, name
        assert dataset.sizes[FRAME] == video.n_frames
        np.testing.assert_array_equal(dataset["logmel"].values, video.read("logmel"))  # zeros stay zeros, not NaN
        np.testing.assert_array_equal(dataset["mel64_time"].values, video.read("mel64_time"))
        assert dataset["fer"].attrs["columns"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def test_every_array_has_a_schema_that_fits(sample_store):
    for video_id in sample_store.video_ids():
        video = sample_store.video(video_id)
        for name in video.array_names():
            array = video.array(name)
            schema = ArraySchema.from_array(name, array)
            assert array.attrs["kind"] == schema.kind and schema.problems(name, array.shape, array.dtype,
                                                                          array.metadata.dimension_names) == []
            columns = array.attrs.get("columns")
            assert columns is None or (isinstance(columns, list) and len(columns) == array.shape[-1]
                                       and all(isinstance(c, str) for c in columns)), name
        kinds = {name: video.array(name).attrs["kind"] for name in video.array_names()}
        assert {kinds["audio_valid"], kinds["face_valid"], kinds["word_valid"]} == {"validity"}
        assert kinds["mel64_time"] == kinds["frame_time"] == "time"
        assert kinds["word_index"] == kinds["mel64_row"] == "index"


def old_style_copy(store: FeatureStore, target: Path) -> FeatureStore:
    """``store`` as affectsync wrote stores before the schema: no dimension names, no ``kind``, prose columns."""
    shutil.copytree(store.location, target)
    for metadata in target.glob("videos/*/*/zarr.json"):
        document = json.loads(metadata.read_text())
        document.pop("dimension_names", None)
        attributes = document.get("attributes", {})
        attributes.pop("kind", None)
        if "columns" in attributes and metadata.parent.name == "logmel":
            attributes["columns"] = "5 blocks of 40 log-Mel bands (dB), one block per frame"
        metadata.write_text(json.dumps(document))
    (target / "zarr.json").write_text(json.dumps({**json.loads((target / "zarr.json").read_text()),
                                                   "consolidated_metadata": None}))
    return FeatureStore(str(target))


def test_stores_written_before_the_schema_stay_readable_and_verifiable(sample_store, tmp_path):
    old = old_style_copy(sample_store, tmp_path / "old.zarr")
    assert verify_store(old) == {}
    video = old.video("grid_id2_vcd_swwp2s")
    assert video.array("logmel").metadata.dimension_names is None
    inferred = {name: ArraySchema.from_array(name, video.array(name)) for name in video.array_names()}
    assert inferred["audio_valid"].kind == "validity" and inferred["mel64_time"].kind == "time"
    assert inferred["word_index"].kind == "index" and inferred["mel64"].clock == "mel64_time"
    assert inferred["logmel"].columns is None  # prose is not names
    np.testing.assert_array_equal(video.read("logmel"), sample_store.video("grid_id2_vcd_swwp2s").read("logmel"))


def test_an_array_that_does_not_fit_its_schema_is_refused(sample_store, tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    group = store.create_video("v", {"n_frames": 3})
    with pytest.raises(StoreError, match="expected bool"):
        group.write("x_valid", np.zeros(3, np.float32), {}, ArraySchema(kind="validity"))
    with pytest.raises(StoreError, match="3 column names for shape"):
        group.write("x", np.zeros((3, 2), np.float32), {}, ArraySchema(columns=("a", "b", "c")))


def test_audio_sample_rate_is_the_decoded_one():
    """--set logmel.sample_rate_hz=8000 used to record 8 kHz windows while computing 16 kHz ones."""
    with pytest.raises(UsageError, match="audio is decoded at 16000 Hz"):
        registry.create("logmel", overrides={"sample_rate_hz": 8000})
    assert registry.create("mel64", overrides={"sample_rate_hz": 16000}).config.sample_rate_hz == 16000


def test_landmarks68_are_complete_before_any_crop_is_written():
    """landmarks68 used to be filled as a side effect of draining face_crop's row blocks."""
    video = decode_video(SAMPLES / "grid_id2_vcd_swwp2s.mpg")
    arrays = registry.create("face_crop").extract(video)
    valid, points = arrays["face_valid"].data, arrays["landmarks68"].data  # face_crop's blocks not consumed
    assert valid.all() and np.all(points[valid].reshape(len(points), -1).std(axis=1) > 1)
    crops = np.concatenate(list(arrays["face_crop"].data.blocks))
    assert crops.shape == (video.n_frames, 112, 112, 3) and crops[valid].any()
