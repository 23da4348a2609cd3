"""The tests of features_store.tables: ``export-table`` (Parquet, one row per frame) and ``to_dataframe``, on the real
sample store, read back with pandas and pyarrow and compared with the store's arrays column by column."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import features_store
from features_store.__main__ import main as store_main

CREMA, GRID = "crema_d_1001_DFA_concat", "grid_id2_vcd_swwp2s"
ROWS_PER_GROUP = 64


@pytest.fixture(scope="module")
def exported(sample_store, tmp_path_factory):
    """The whole sample store exported with the defaults, in row groups of 64 frames."""
    out = tmp_path_factory.mktemp("tables") / "sample.parquet"
    assert store_main(["export-table", sample_store.location, str(out), "--rows-per-group", str(ROWS_PER_GROUP)]) == 0
    return out


def expected_columns(name: str, array) -> list[str]:
    """The table's names for a stored array, spelled out here as the docs promise (not through the module)."""
    columns = array.attrs.get("columns")
    if array.ndim == 1:
        return [name]
    if array.ndim == 2:
        return [f"{name}_{c}" for c in (columns if columns and len(columns) == array.shape[1]
                                        else range(array.shape[1]))]
    assert array.ndim == 3  # landmarks68 (T, 68, 2), columns x, y
    return [f"{name}_{p}_{c}" for p in range(array.shape[1]) for c in columns]


def test_export_table_equals_the_store_column_by_column(sample_store, exported):
    table = pd.read_parquet(exported)
    assert list(table.columns[:3]) == ["video_id", "frame", "time_s"]
    assert len(table) == sum(sample_store.video(v).n_frames for v in sample_store.video_ids())
    for name in ("face_crop", "face_mask", "mel64", "frame_time"):  # images and other clocks are not columns
        assert not any(column == name or column.startswith(f"{name}_") for column in table.columns), name
    assert {"landmarks68_0_x", "landmarks68_67_y", "fer_angry", "bert_383", "face_score"} <= set(table.columns)
    n_checked = 0
    for video_id in sample_store.video_ids():
        video = sample_store.video(video_id)
        rows = table[table["video_id"] == video_id].reset_index(drop=True)
        n_frames = video.n_frames
        assert len(rows) == n_frames
        np.testing.assert_array_equal(rows["frame"].to_numpy(), np.arange(n_frames))
        assert rows["frame"].dtype == np.int64
        np.testing.assert_array_equal(rows["time_s"].to_numpy(), video.read("frame_time"))
        for name in ("face_valid", "audio_valid", "word_valid", "identity_valid"):
            assert rows[name].dtype == np.bool_
            np.testing.assert_array_equal(rows[name].to_numpy(), video.read(name), err_msg=name)
        for name in ("bert", "fer", "fer_features", "logmel", "mfcc_mel", "face_box", "face_score", "landmarks68",
                     "identity", "identity_keyframe"):
            array = video.array(name)
            stored = video.read(name).reshape(n_frames, -1)
            for k, column in enumerate(expected_columns(name, array)):
                values = rows[column].to_numpy()
                assert values.dtype == array.dtype, column  # float32 stays float32, bool stays bool
                np.testing.assert_array_equal(values, stored[:, k], err_msg=f"{video_id} {column}")
                n_checked += 1
    assert n_checked > 2 * 1000
    parquet = pq.ParquetFile(exported)
    groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    assert groups == [min(ROWS_PER_GROUP, n - start) for v in sample_store.video_ids()
                      for n in [sample_store.video(v).n_frames] for start in range(0, n, ROWS_PER_GROUP)]
    assert len(groups) == sum(math.ceil(sample_store.video(v).n_frames / ROWS_PER_GROUP)
                              for v in sample_store.video_ids()) > 2
    about = json.loads(parquet.schema_arrow.metadata[b"affectsync"])
    assert about["videos"] == {v: sample_store.video(v).n_frames for v in sample_store.video_ids()}
    assert about["features"]["fer"]["validity"] == "face_valid"
    assert about["features"]["fer"]["recipes"][0]["recipe"]["extractor"] == "Fer"
    assert sorted(about["features"]["fer"]["recipes"][0]["videos"]) == sample_store.video_ids()


def test_to_dataframe_equals_the_parquet_rows(sample_store, exported):
    table = pd.read_parquet(exported)
    for video_id in sample_store.video_ids():
        frame = features_store.to_dataframe(sample_store, video_id)
        pd.testing.assert_frame_equal(frame, table[table["video_id"] == video_id].reset_index(drop=True))


def test_chosen_features_and_videos(sample_store, tmp_path):
    out = tmp_path / "grid.parquet"
    assert store_main(["export-table", sample_store.location, str(out), "--features", "landmarks68,word_index",
                       "--videos", GRID]) == 0
    table = pd.read_parquet(out)
    video = sample_store.video(GRID)
    # the validity array each feature names comes along; word_index has none
    assert list(table.columns[:4]) == ["video_id", "frame", "time_s", "face_valid"]
    assert len(table.columns) == 4 + 68 * 2 + 1
    assert table["word_index"].dtype == np.int32
    np.testing.assert_array_equal(table["word_index"].to_numpy(), video.read("word_index"))
    np.testing.assert_array_equal(table["landmarks68_30_y"].to_numpy(), video.read("landmarks68")[:, 30, 1])
    assert pq.ParquetFile(out).metadata.num_row_groups == 1  # 75 frames < 4096


@pytest.mark.parametrize("arguments, cause", [
    (["--features", "face_crop"], "face_crop: an image per frame"),
    (["--features", "fer,mel64"], "mel64: on its own clock"),
    (["--features", "nosuch"], "has no array 'nosuch'"),
    (["--videos", "nosuch"], "no video 'nosuch'"),
    (["--rows-per-group", "0"], "rows per group must be at least 1"),
    (["--out-folder", "nosuch"], "its folder"),
])
def test_refusals_name_the_cause_and_write_nothing(sample_store, tmp_path, capsys, arguments, cause):
    out = tmp_path / "refused.parquet"
    if arguments[0] == "--out-folder":  # not an option: the output's folder is missing
        out, arguments = tmp_path / arguments[1] / out.name, []
    assert store_main(["export-table", sample_store.location, str(out), *arguments]) == 2
    assert cause in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
