"""The tests of features_store.importers: OpenFace 2.2 and py-feat CSVs, written here in their real layouts, placed
on the frames of a copy of the real sample store; values must land on the right frames exactly, and the imported
feature must load for training."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from features_store import FeatureStore
from features_store.__main__ import main as store_main
from features_store.importers import import_openface, import_pyfeat
from features_store.interop import InteropError
from features_store.verify import verify_video

CREMA, GRID = "crema_d_1001_DFA_concat", "grid_id2_vcd_swwp2s"

# OpenFace 2.2 FeatureExtraction (RecorderCSV.cpp): 56 eye landmarks, 68 face landmarks, 34 shape modes, AUs sorted
OPENFACE_AUS_R = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
                  "AU20", "AU23", "AU25", "AU26", "AU45"]
OPENFACE_AUS_C = sorted(OPENFACE_AUS_R + ["AU28"])
OPENFACE_FEATURES = (
    ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
    + [f"eye_lmk_{axis}_{i}" for axis in "xyXYZ" for i in range(56)]
    + ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    + [f"{axis}_{i}" for axis in "xy" for i in range(68)] + [f"{axis}_{i}" for axis in "XYZ" for i in range(68)]
    + ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]
    + [f"{au}_r" for au in OPENFACE_AUS_R] + [f"{au}_c" for au in OPENFACE_AUS_C])
OPENFACE_HEADER = ["frame", "face_id", "timestamp", "confidence", "success"] + OPENFACE_FEATURES

# py-feat Detector.detect(data_type="video") Fex columns (feat/utils, feat/pretrained.py AU_LANDMARK_MAP["Feat"])
PYFEAT_AUS = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12", "AU14", "AU15", "AU17",
              "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43"]
PYFEAT_FEATURES = (
    ["FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore"]
    + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    + ["Pitch", "Roll", "Yaw", "X", "Y", "Z"] + PYFEAT_AUS
    + ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    + [f"Identity_{i + 1}" for i in range(512)] + ["gaze_pitch", "gaze_yaw", "gaze_angle"])
PYFEAT_HEADER = PYFEAT_FEATURES + ["FrameHeight", "FrameWidth", "input", "frame", "approx_time", "Identity"]


def copy_of(sample_store: FeatureStore, path: Path) -> FeatureStore:
    """Never the session's store: a copy."""
    shutil.copytree(sample_store.location, path)
    return FeatureStore(str(path), mode="a")


def row_values(key: float, n: int) -> np.ndarray:
    """The feature values of one CSV row, distinct per row and column: ``key + column / 1000``."""
    return np.round(key + np.arange(n) / 1000, 3)


def openface_line(frame: int, face_id: int, timestamp_s: float, confidence: float, success: int,
                  values: np.ndarray) -> str:
    """A row as OpenFace writes it: ", " separated, timestamp to 3 decimals."""
    cells = [str(frame), str(face_id), f"{timestamp_s:.3f}", f"{confidence:.2f}", str(success)]
    return ", ".join(cells + [f"{v:.3f}" for v in values])


def write_openface(path: Path, rows: list[str]) -> Path:
    path.write_text(", ".join(OPENFACE_HEADER) + "\n" + "\n".join(rows) + "\n")
    return path


def test_openface_rows_land_on_their_frames(sample_store, tmp_path, capsys):
    store = copy_of(sample_store, tmp_path / "store.zarr")
    time_s = store.video(GRID).read("frame_time")
    time_s = time_s - time_s[0]
    interval_s = float(np.median(np.diff(time_s)))  # GRID: 25 fps, 0.04 s; tolerance 0.02 s
    n = len(OPENFACE_FEATURES)
    expected = {}  # frame -> values that must land there
    rows = []
    for frame in (0, 1, 2, 8, 9):  # on the grid
        expected[frame] = row_values(frame, n)
        rows.append(openface_line(frame + 1, 0, time_s[frame], 0.98, 1, expected[frame]))
    expected[3] = row_values(3.5, n)  # 0.3 frame late: still frame 3
    rows.append(openface_line(4, 0, time_s[3] + 0.3 * interval_s, 0.9, 1, expected[3]))
    # frame 4: no row at all
    rows.append(openface_line(6, 0, time_s[5], 0.1, 0, row_values(5, n)))  # frame 5: tracking failed (success 0)
    rows.append(openface_line(7, 0, time_s[6], 0.70, 1, row_values(60, n)))  # frame 6: two faces, the surer wins
    expected[6] = row_values(61, n)
    rows.append(openface_line(7, 1, time_s[6], 0.95, 1, expected[6]))
    expected[7] = row_values(7.5, n)  # 0.3 frame early: still frame 7
    rows.append(openface_line(8, 0, time_s[7] - 0.3 * interval_s, 0.9, 1, expected[7]))
    last = len(time_s) - 1
    expected[last] = row_values(74, n)  # 0.4 frame after the last frame: still the last frame
    rows.append(openface_line(last + 1, 0, time_s[last] + 0.4 * interval_s, 0.9, 1, expected[last]))
    rows.append(openface_line(last + 2, 0, time_s[last] + 0.75 * interval_s, 0.9, 1, row_values(80, n)))
    rows.append(openface_line(0, 0, -0.6 * interval_s, 0.9, 1, row_values(81, n)))  # before the first frame
    grid_csv = write_openface(tmp_path / f"{GRID}.csv", rows)
    crema_time = store.video(CREMA).read("frame_time")
    crema_csv = write_openface(tmp_path / f"{CREMA}.csv", [
        openface_line(k + 1, 0, crema_time[k] - crema_time[0], 0.9, 1, row_values(k, n)) for k in range(20)])

    assert store_main(["import-openface", str(grid_csv), str(crema_csv), store.location]) == 0
    printed = capsys.readouterr().out
    assert f"openface on {GRID}: 9 of 75 frames from 13 rows" in printed
    assert "1 rows without a face" in printed and "1 rows on an already-taken frame" in printed
    low, high = -0.6 * interval_s, time_s[last] + 0.75 * interval_s
    assert f"2 rows unmatched ({low:.3f}..{high:.3f} s" in printed

    store = FeatureStore(store.location)
    video = store.video(GRID)
    data, valid = video.read("openface"), video.read("openface_valid")
    assert data.shape == (75, n) and data.dtype == np.float32
    assert sorted(np.flatnonzero(valid)) == sorted(expected)
    for frame, values in expected.items():
        np.testing.assert_array_equal(data[frame], values.astype(np.float32), err_msg=f"frame {frame}")
    assert not data[~valid].any()  # frames 4 (no row) and 5 (success 0) among them: zeros
    array = video.array("openface")
    assert array.attrs["columns"] == OPENFACE_FEATURES  # bookkeeping columns left out, spaces stripped
    assert array.attrs["validity"] == "openface_valid" and array.attrs["per_frame"] is True
    provenance = array.attrs["provenance"]
    assert provenance["extractor"] == "import_openface" and provenance["feature"] == "openface"
    assert provenance["parameters"]["tool"] == "OpenFace"
    imported = array.attrs["imported_from"]
    assert imported["file"] == grid_csv.name and len(imported["sha256"]) == 64
    assert (imported["n_rows"], imported["n_unmatched"]) == (13, 2)
    assert imported["tolerance_s"] == pytest.approx(interval_s / 2)
    assert video.array("openface_valid").attrs["kind"] == "validity"
    assert verify_video(video) == [] and verify_video(store.video(CREMA)) == []
    crema = store.video(CREMA).read("openface")
    np.testing.assert_array_equal(crema[:20], np.stack([row_values(k, n) for k in range(20)]).astype(np.float32))
    assert store.video(CREMA).read("openface_valid").sum() == 20

    from train.features import StoreFeatures  # the trainer selects it by name and reads its validity

    features = StoreFeatures(store, ["openface", "fer"], [CREMA, GRID], in_memory=True)
    assert features.modalities == {"openface": ["openface"], "face": ["fer"]}
    assert features.modality_dims["openface"] == n
    np.testing.assert_array_equal(features.valid(GRID, "openface"), valid)
    features.fit_standardiser([CREMA, GRID])
    assert features.rows(GRID, 0, 10)["openface"].shape == (10, n)


def pyfeat_line(frame: int, values: np.ndarray | None, approx_time: str) -> str:
    """A Fex row as pandas' to_csv writes it; ``values`` None: no face (py-feat leaves every prediction empty).
    Gaze is always empty (detected without a gaze model)."""
    if values is None:
        features = [""] * len(PYFEAT_FEATURES)
    else:
        features = [repr(float(v)) for v in values[:-3]] + ["", "", ""]
    return ",".join(features + ["360.0", "480.0", "/data/videos/clip one.mp4", str(frame), approx_time, "Person_0"])


def test_pyfeat_rows_land_on_their_frame_indices(sample_store, tmp_path):
    store = copy_of(sample_store, tmp_path / "store.zarr")
    n = len(PYFEAT_FEATURES)
    face_score = PYFEAT_FEATURES.index("FaceScore")
    expected = {}
    lines = []
    for frame in (0, 1, 4, 378):
        expected[frame] = row_values(frame, n)
        expected[frame][face_score] = 0.99
        lines.append(pyfeat_line(frame, expected[frame], "00:00"))
    lines.append(pyfeat_line(2, None, "00:00"))  # frame 2: no face
    weaker, expected[3] = row_values(30, n), row_values(31, n)  # frame 3: two faces, the higher FaceScore wins
    weaker[face_score], expected[3][face_score] = 0.6, 0.97
    lines += [pyfeat_line(3, weaker, "00:00"), pyfeat_line(3, expected[3], "00:00")]
    lines += [pyfeat_line(379, row_values(1, n), "00:12"), pyfeat_line(400, row_values(2, n), "00:13")]  # past T
    csv = tmp_path / "detections.csv"
    csv.write_text(",".join(PYFEAT_HEADER) + "\n" + "\n".join(lines) + "\n")

    (report,) = import_pyfeat([csv], store.location, video_id=CREMA)
    assert (report.n_rows, report.n_valid_frames, report.n_without_face, report.n_superseded) == (9, 5, 1, 1)
    assert (report.n_unmatched, report.unmatched_range, report.unit) == (2, (379.0, 400.0), "frame")
    assert report.nan_cells_zeroed == {"gaze_pitch": 5, "gaze_yaw": 5, "gaze_angle": 5}

    video = FeatureStore(store.location).video(CREMA)
    data, valid = video.read("pyfeat"), video.read("pyfeat_valid")
    assert video.array("pyfeat").attrs["columns"] == PYFEAT_FEATURES
    assert sorted(np.flatnonzero(valid)) == sorted(expected)
    for frame, values in expected.items():
        want = values.astype(np.float32)
        want[-3:] = 0  # the empty gaze cells
        np.testing.assert_array_equal(data[frame], want, err_msg=f"frame {frame}")
    assert not data[~valid].any()
    assert video.array("pyfeat").attrs["provenance"]["parameters"]["placed_by"].startswith("frame")
    assert verify_video(video) == []


def test_pyfeat_numeric_approx_time_is_matched_as_seconds(sample_store, tmp_path):
    store = copy_of(sample_store, tmp_path / "store.zarr")
    time_s = store.video(GRID).read("frame_time")
    n = len(PYFEAT_FEATURES)
    lines = [pyfeat_line(0, row_values(1, n), f"{time_s[10] - time_s[0] + 0.01:.4f}"),  # 0.25 frame off: frame 10
             pyfeat_line(1, row_values(2, n), f"{time_s[-1] - time_s[0] + 0.03:.4f}")]  # 0.75 frame past the end
    csv = tmp_path / f"{GRID}.csv"
    csv.write_text(",".join(PYFEAT_HEADER) + "\n" + "\n".join(lines) + "\n")
    (report,) = import_pyfeat([csv], store.location)
    assert (report.n_valid_frames, report.n_unmatched, report.unit) == (1, 1, "s")
    valid = FeatureStore(store.location).video(GRID).read("pyfeat_valid")
    assert list(np.flatnonzero(valid)) == [10]


def test_refusals_name_the_file_and_the_cause(sample_store, tmp_path, capsys):
    store = copy_of(sample_store, tmp_path / "store.zarr")
    before = store.video(GRID).array_names()
    n = len(OPENFACE_FEATURES)
    good = write_openface(tmp_path / f"{GRID}.csv", [openface_line(1, 0, 0.0, 0.9, 1, row_values(1, n))])
    no_time = tmp_path / "no_time" / f"{GRID}.csv"
    no_time.parent.mkdir()
    no_time.write_text("frame, face_id, confidence, success, AU01_r\n1, 0, 0.9, 1, 0.5\n")
    unknown = write_openface(tmp_path / "nosuch.csv", [openface_line(1, 0, 0.0, 0.9, 1, row_values(1, n))])
    binary = tmp_path / "binary" / f"{GRID}.csv"
    binary.parent.mkdir()
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    text_cell = tmp_path / "text" / f"{GRID}.csv"
    text_cell.parent.mkdir()
    text_cell.write_text(", ".join(OPENFACE_HEADER) + "\n"
                         + openface_line(1, 0, 0.0, 0.9, 1, row_values(1, n)).replace("1.005", "oops") + "\n")
    cases = [([str(no_time)], "no 'timestamp' column (required in OpenFace CSVs"),
             ([str(unknown)], "no video 'nosuch'"),
             ([str(binary)], "not a CSV (not UTF-8 text)"),
             ([str(text_cell)], "line 2, column 'gaze_1_z': 'oops' is not a number"),
             (["--video", GRID, str(good), str(unknown)], "names the video of one CSV")]
    for arguments, cause in cases:
        assert store_main(["import-openface", *arguments, store.location]) == 2
        err = capsys.readouterr().err
        assert err.startswith("features_store: ") and cause in err, (arguments, err)
        assert store.video(GRID).array_names() == before  # nothing written
    assert store_main(["import-openface", str(good), store.location]) == 0
    (tmp_path / "again").mkdir()
    again = write_openface(tmp_path / "again" / f"{GRID}.csv", [openface_line(1, 0, 0.0, 0.9, 1, row_values(7, n))])
    with pytest.raises(InteropError, match="already has openface, openface_valid; give --overwrite"):
        import_openface([again], store.location)
    (report,) = import_openface([again], store.location, overwrite=True, tool_version="2.2.0")
    video = FeatureStore(store.location).video(GRID)
    np.testing.assert_array_equal(video.read("openface")[0], row_values(7, n).astype(np.float32))
    assert video.array("openface").attrs["provenance"]["parameters"]["tool_version"] == "2.2.0"
    assert verify_video(video) == []
