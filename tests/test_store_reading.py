"""features_store.reading: rows read straight from chunk files equal what zarr reads, for every array shape the store
holds, any row range, absent and truncated chunks; arrays it cannot read directly go through zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BytesCodec

from features_store import FeatureStore
from features_store.reading import TruncatedChunk, direct_folder, read_rows


@pytest.fixture()
def video(tmp_path):
    return FeatureStore(str(tmp_path / "s.zarr"), mode="a").create_video("v", {"n_frames": 1000})


def test_rows_equal_zarrs_for_every_kind_of_array_and_range(video):
    rng = np.random.default_rng(0)
    arrays = {
        "feature": rng.standard_normal((1000, 700)).astype(np.float32),  # 375 rows per 1 MB chunk: 3 chunks
        "valid": rng.random(1000) < 0.5,
        "crop": rng.integers(0, 255, (1000, 24, 24, 3), dtype=np.uint8),
        "index": rng.integers(-1, 1 << 40, (1000, 2), dtype=np.int64),
    }
    for name, data in arrays.items():
        video.write(name, data, {})
        array = video.array(name)
        assert direct_folder(array) is not None, name
        for start, stop in [(0, None), (0, 1), (374, 376), (375, 750), (5, 999), (999, 1000), (10, 10), (990, 5000)]:
            np.testing.assert_array_equal(read_rows(array, start, stop), array[start:stop], err_msg=name)
        np.testing.assert_array_equal(video.read(name), data)
    out = np.empty((100, 700), np.float32)
    assert read_rows(video.array("feature"), 300, 400, out=out) is out
    np.testing.assert_array_equal(out, arrays["feature"][300:400])
    with pytest.raises(ValueError, match="C-contiguous float32 array of shape \\(100, 700\\)"):
        read_rows(video.array("feature"), 300, 400, out=np.empty((100, 700), np.float64))


def test_an_absent_chunk_reads_as_zarr_reads_it_and_a_truncated_one_is_an_error(video, tmp_path):
    data = np.arange(1000 * 700, dtype=np.float32).reshape(1000, 700)
    video.write("feature", data, {})
    array = video.array("feature")
    chunk = direct_folder(array) / "c" / "1" / "0"
    chunk.unlink()
    np.testing.assert_array_equal(read_rows(array), array[...])
    rows = array.chunks[0]
    assert (read_rows(array, rows, 2 * rows) == array.fill_value).all()
    video.write("feature", data, {})
    chunk.write_bytes(chunk.read_bytes()[:1000])
    with pytest.raises(TruncatedChunk, match="c/1/0: chunk file ends after 1000 bytes"):
        read_rows(video.array("feature"), 370, 400)


def test_arrays_it_cannot_read_directly_go_through_zarr(video, tmp_path):
    data = np.random.default_rng(1).standard_normal((500, 40)).astype(np.float32)
    group = video.group
    others = {
        "compressed": group.create_array("compressed", shape=data.shape, dtype=data.dtype, chunks=(64, 40)),
        "big_endian": group.create_array("big_endian", shape=data.shape, dtype=data.dtype, chunks=(64, 40),
                                         compressors=None, serializer=BytesCodec(endian="big")),
        "column_chunks": group.create_array("column_chunks", shape=data.shape, dtype=data.dtype, chunks=(64, 8),
                                            compressors=None),
        "in_memory": zarr.create_array(zarr.storage.MemoryStore(), shape=data.shape, dtype=data.dtype,
                                       chunks=(64, 40), compressors=None),
    }
    for name, array in others.items():
        array[...] = data
        assert direct_folder(array) is None, name
        np.testing.assert_array_equal(read_rows(array, 30, 300), data[30:300], err_msg=name)


def test_a_feature_stored_as_float16_holds_the_float32_values_to_their_precision(tmp_path):
    from extract.pipeline import create_extractors
    from extract.run import run_extraction
    from features_store.errors import UsageError
    from train.features import StoreFeatures

    clip = Path(__file__).resolve().parents[1] / "samples" / "grid_id2_vcd_swwp2s.mpg"
    stores = {}
    for dtype in ("float32", "float16"):
        stores[dtype] = str(tmp_path / f"{dtype}.zarr")
        run_extraction([clip], stores[dtype], ["logmel", "mfcc_mel"], progress=False,
                       settings={"logmel": {"dtype": dtype}})
    wide, narrow = (FeatureStore(stores[d]).video(clip.stem) for d in ("float32", "float16"))
    assert narrow.array("logmel").dtype == np.float16 and narrow.array("mfcc_mel").dtype == np.float32
    assert narrow.array("logmel").attrs["provenance"]["parameters"]["dtype"] == "float16"
    assert "dtype" not in wide.array("logmel").attrs["provenance"]["parameters"]  # float32 recipes are unchanged
    exact = wide.read("logmel")
    np.testing.assert_allclose(narrow.read("logmel").astype(np.float32), exact, rtol=2 ** -11, atol=1e-6)
    rows = StoreFeatures(FeatureStore(stores["float16"]), ["logmel", "mfcc_mel"], [clip.stem])
    assert rows._read(clip.stem, "audio").dtype == np.float32
    with pytest.raises(UsageError, match="logmel.dtype='int8': a feature is stored as one of float32, float16"):
        create_extractors(["logmel"], settings={"logmel": {"dtype": "int8"}})
