"""SCRFD (``--set face_crop.detector=scrfd``, :mod:`extract.faces.scrfd`): the decoder, batching and letterboxing run
on small real ONNX graphs built here with SCRFD's exact input and output layout, which find bright squares on a dark
frame, so every box, keypoint and score they should give is known; then through ``face_crop`` on a generated video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from extract import registry
from extract.__main__ import main as extract_main
from extract.faces.align import ARCFACE_TEMPLATE_112
from extract.faces.scrfd import ScrfdConfig, ScrfdDetector, letterbox_size
from extract.weights import MODELS_ENV, WeightsError, file_sha256
from features_store import FeatureStore
from features_store.errors import UsageError
from media_factory import write_frames

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "crema_d_1001_DFA_concat.mp4"
INPUT_PX = 640
REACH_PX = 320
"""How far (input pixels) the model looks from an anchor for the square's edges."""
SHARPNESS = 50.0
"""The model's mask is sigmoid(SHARPNESS * (brightness - 0.5)): square edges where brightness crosses half."""
KEYPOINT_FRACTIONS = ARCFACE_TEMPLATE_112 / 112.0
"""Where the model puts the five keypoints in its box (fractions of width and height): the ArcFace layout."""


def expected_score(level: int) -> float:
    """The model's score inside a square of grey ``level``: sigmoid(40 * (level / 255 - 0.9))."""
    return float(1.0 / (1.0 + np.exp(-40.0 * (level / 255.0 - 0.9))))


def square_finder_onnx(path: Path, strides=(8, 16, 32), anchors: int = 2, batch: str | int = "batch",
                       keypoints: bool = True) -> Path:
    """An ONNX graph with SCRFD's layout that finds bright squares on a dark frame.

    Input (batch, 3, 640, 640) ``(pixel - 127.5) / 128``. Per stride s, at every anchor (x, y) = (column, row) * s:
    the score is sigmoid(40 * (mean brightness of the 5 x 5 pixels around the anchor - 0.9)); the box distances
    (left, top, right, bottom) / s are the numbers of "square" pixels (brightness above half, a steep sigmoid) left of,
    above, right of (from the anchor on) and below the anchor along its row and column, so every anchor inside a
    square decodes that square's box; keypoints / s are the ArcFace layout placed in that box (linear in the four
    distances). Outputs: scores, boxes, keypoints per stride, each (batch, N_s, C) with a dynamic batch, (N_s, C)
    with a batch of 1 (as det_10g.onnx), the ``anchors`` of a location identical."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initialisers = [], {}

    def constant(name: str, array: np.ndarray) -> str:
        if name not in initialisers:
            dtype = np.float32 if np.asarray(array).dtype.kind == "f" else np.int64
            initialisers[name] = numpy_helper.from_array(np.asarray(array, dtype), name)
        return name

    # brightness (pixel / 255, channel mean) and the square mask, from the normalised input
    grey = np.full((1, 3, 1, 1), 128.0 / 255 / 3)  # (pixel - 127.5) / 128 -> pixel / 255, channel mean
    nodes.append(helper.make_node("Conv", ["input", constant("w_bright", grey), constant("b_bright", np.full(
        1, 127.5 / 255))], ["bright"]))
    nodes.append(helper.make_node("Conv", ["input", constant("w_mask", grey * SHARPNESS), constant("b_mask", np.full(
        1, SHARPNESS * (127.5 / 255 - 0.5)))], ["mask_logit"]))
    nodes.append(helper.make_node("Sigmoid", ["mask_logit"], ["mask"]))
    width = 2 * REACH_PX + 1
    kept = 3 if keypoints else 2
    keypoint_weights = np.zeros((10, 4, 1, 1))  # channels: left, top, right, bottom
    for point, (fx, fy) in enumerate(KEYPOINT_FRACTIONS):
        keypoint_weights[2 * point, [0, 2], 0, 0] = fx - 1.0, fx      # x - anchor = (fx - 1) * left + fx * right
        keypoint_weights[2 * point + 1, [1, 3], 0, 0] = fy - 1.0, fy  # y - anchor = (fy - 1) * top + fy * bottom
    outputs = {kind: [] for kind in ("score", "box", "kps")[:kept]}
    for stride in strides:
        score_kernel = np.full((1, 1, 5, 5), 40.0 / 25)
        nodes.append(helper.make_node("Conv", ["bright", constant(f"w_score{stride}", score_kernel),
                                               constant(f"b_score{stride}", np.full(1, -36.0))],
                                      [f"score_logit{stride}"], strides=[stride, stride], pads=[2, 2, 2, 2]))
        nodes.append(helper.make_node("Sigmoid", [f"score_logit{stride}"], [f"score_map{stride}"]))
        across, down = np.zeros((2, 1, 1, width)), np.zeros((2, 1, width, 1))
        across[0, 0, 0, :REACH_PX] = down[0, 0, :REACH_PX, 0] = 1.0 / stride            # left of / above
        across[1, 0, 0, REACH_PX:-1] = down[1, 0, REACH_PX:-1, 0] = 1.0 / stride        # from the anchor on
        nodes.append(helper.make_node("Conv", ["mask", constant(f"w_across{stride}", across)], [f"across{stride}"],
                                      strides=[stride, stride], pads=[0, REACH_PX, 0, REACH_PX]))
        nodes.append(helper.make_node("Conv", ["mask", constant(f"w_down{stride}", down)], [f"down{stride}"],
                                      strides=[stride, stride], pads=[REACH_PX, 0, REACH_PX, 0]))
        nodes.append(helper.make_node("Split", [f"across{stride}"], [f"left{stride}", f"right{stride}"], axis=1,
                                      num_outputs=2))
        nodes.append(helper.make_node("Split", [f"down{stride}"], [f"top{stride}", f"bottom{stride}"], axis=1,
                                      num_outputs=2))
        nodes.append(helper.make_node("Concat", [f"left{stride}", f"top{stride}", f"right{stride}",
                                                 f"bottom{stride}"], [f"box_map{stride}"], axis=1))
        nodes.append(helper.make_node("Conv", [f"box_map{stride}", constant("w_kps", keypoint_weights)],
                                      [f"kps_map{stride}"]))
        for kind, channels in (("score", 1), ("box", 4), ("kps", 10))[:kept]:
            nodes.append(helper.make_node("Transpose", [f"{kind}_map{stride}"], [f"{kind}_hwc{stride}"],
                                          perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Concat", [f"{kind}_hwc{stride}"] * anchors, [f"{kind}_anchors{stride}"],
                                          axis=-1))
            layout = constant(f"shape_{kind}{stride}", np.array([0, -1, channels] if batch == "batch"
                                                                 else [-1, channels]))
            nodes.append(helper.make_node("Reshape", [f"{kind}_anchors{stride}", layout], [f"{kind}_{stride}"]))
            outputs[kind].append(f"{kind}_{stride}")
    rows = {stride: (INPUT_PX // stride) ** 2 * anchors for stride in strides}
    graph_outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, (["batch"] if batch == "batch" else [])
                                                   + [rows[int(name.split("_")[1])], channels])
                     for kind, channels in (("score", 1), ("box", 4), ("kps", 10))[:kept] for name in outputs[kind]]
    graph = helper.make_graph(nodes, "square_finder", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [batch, 3, INPUT_PX, INPUT_PX])], graph_outputs, list(initialisers.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def frame_with_squares(height: int, width: int, squares, background: int = 20) -> np.ndarray:
    """A dark (height, width, 3) uint8 frame with squares ``(x1, y1, x2, y2, level)`` painted (x2, y2 exclusive)."""
    frame = np.full((height, width, 3), background, np.uint8)
    for x1, y1, x2, y2, level in squares:
        frame[y1:y2, x1:x2] = level
    return frame


def keypoints_in(box) -> np.ndarray:
    """Where the model puts the five keypoints for ``box`` (source pixels)."""
    x1, y1, x2, y2 = box[:4]
    return np.array([[x1 + fx * (x2 - x1), y1 + fy * (y2 - y1)] for fx, fy in KEYPOINT_FRACTIONS])


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scrfd_models")
    square_finder_onnx(folder / "tiny_scrfd.onnx")
    square_finder_onnx(folder / "tiny_scrfd_single.onnx", batch=1)
    square_finder_onnx(folder / "tiny_scrfd_5strides.onnx", strides=(8, 16, 32, 64, 128), anchors=1)
    square_finder_onnx(folder / "tiny_scrfd_nokps.onnx", keypoints=False)
    return folder


def detector(models_dir: Path, file_name: str, **settings) -> ScrfdDetector:
    return ScrfdDetector(ScrfdConfig(weights_file=file_name, **settings), (models_dir,),
                         providers=["CPUExecutionProvider"])


# (height, width), two squares in rows and columns of their own (x1, y1, x2, y2, grey level): the brighter first
FRAMES = {
    (360, 480): [(52, 40, 148, 136, 255), (250, 190, 410, 330, 240)],    # resized up by 4/3
    (720, 1280): [(101, 80, 301, 280, 255), (700, 350, 1020, 690, 240)],  # resized down by 2
    (480, 360): [(30, 20, 130, 140, 255), (180, 250, 330, 420, 240)],     # portrait: resized into the height
}


@pytest.mark.parametrize("frame_hw", list(FRAMES), ids=lambda hw: f"{hw[1]}x{hw[0]}")
def test_scrfd_finds_each_square_once_at_its_box_with_its_keypoints_and_score(models_dir, frame_hw):
    squares = FRAMES[frame_hw]
    frame = frame_with_squares(*frame_hw, squares)
    faces = detector(models_dir, "tiny_scrfd.onnx").detect([frame])[0]
    assert len(faces) == 2  # every anchor inside a square gives its box: non-maximum suppression leaves one
    expected = np.array([square[:4] for square in squares], np.float32)
    np.testing.assert_allclose(faces.boxes, expected, atol=2.0)
    np.testing.assert_allclose(faces.landmarks5, np.stack([keypoints_in(s) for s in squares]), atol=2.0)
    np.testing.assert_allclose(faces.scores, [expected_score(s[4]) for s in squares], atol=0.01)
    assert faces.boxes.dtype == faces.scores.dtype == faces.landmarks5.dtype == np.float32
    eyes_x = faces.landmarks5[:, :2, 0]
    assert (eyes_x[:, 0] < eyes_x[:, 1]).all()  # the eye on the image's left first, as MTCNN


def test_letterbox_keeps_the_aspect_ratio_as_insightface_rounds_it():
    assert letterbox_size((360, 480), (640, 640)) == (640, 480)
    assert letterbox_size((720, 1280), (640, 640)) == (640, 360)
    assert letterbox_size((480, 360), (640, 640)) == (480, 640)
    assert letterbox_size((1080, 1920), (640, 640)) == (640, 360)
    assert letterbox_size((333, 500), (640, 640)) == (640, 426)  # int(640 * 333 / 500) = 426.24 -> 426


def test_batched_single_and_five_stride_graphs_agree_frame_by_frame(models_dir):
    height, width = 360, 480
    frames = [frame_with_squares(height, width, FRAMES[(height, width)]),
              frame_with_squares(height, width, []),  # no face
              frame_with_squares(height, width, [(200, 100, 300, 200, 250)])]
    batched = detector(models_dir, "tiny_scrfd.onnx", batch_frames=3)
    single = detector(models_dir, "tiny_scrfd_single.onnx", batch_frames=3)
    five = detector(models_dir, "tiny_scrfd_5strides.onnx")
    assert batched.frames_per_call == 3 and single.frames_per_call == 1
    results = [model.detect(frames) for model in (batched, single, five)]
    assert [len(faces) for faces in results[0]] == [2, 0, 1]
    for faces in results[1:]:
        for mine, reference in zip(faces, results[0]):
            np.testing.assert_allclose(mine.boxes, reference.boxes, atol=1e-3)
            np.testing.assert_allclose(mine.landmarks5, reference.landmarks5, atol=1e-3)
            np.testing.assert_allclose(mine.scores, reference.scores, atol=1e-5)


def test_thresholds_and_min_face_size_drop_faces(models_dir):
    frame = frame_with_squares(360, 480, FRAMES[(360, 480)])
    assert len(detector(models_dir, "tiny_scrfd.onnx", score_threshold=0.9).detect([frame])[0]) == 1  # 255 only
    assert len(detector(models_dir, "tiny_scrfd.onnx", min_face_px=120).detect([frame])[0]) == 1  # 96 px dropped
    faint = frame_with_squares(360, 480, [(52, 40, 148, 136, 200)])
    assert len(detector(models_dir, "tiny_scrfd.onnx").detect([faint])[0]) == 0  # scores 0.008 < 0.5


def test_a_graph_without_keypoints_is_refused_naming_the_file(models_dir):
    with pytest.raises(WeightsError, match="tiny_scrfd_nokps.onnx: an SCRFD graph without keypoints"):
        detector(models_dir, "tiny_scrfd_nokps.onnx").detect([np.zeros((64, 64, 3), np.uint8)])


def test_mtcnn_orders_landmarks_as_scrfd_does(one_thread):
    """MTCNN's first landmark is the eye on the image's left, as SCRFD's (insightface maps SCRFD's keypoints onto the
    ArcFace template in its norm_crop; the template's first point is the left one)."""
    import av

    from extract.faces.detect import MtcnnDetector

    with av.open(str(SAMPLE)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    faces = MtcnnDetector().detect([frame])[0]
    assert len(faces) >= 1
    points = faces.landmarks5[int(np.argmax(faces.scores))]
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]
    assert ARCFACE_TEMPLATE_112[0, 0] < ARCFACE_TEMPLATE_112[1, 0]


def moving_square_video(path: Path, n_frames: int = 20) -> tuple[Path, np.ndarray]:
    """A 320 x 240 H.264 video of a white square moving right on a dark frame, and its boxes (n_frames, 4)."""
    boxes = np.array([(60 + 3 * i, 50, 150 + 3 * i, 140) for i in range(n_frames)], np.float32)
    frames = [frame_with_squares(240, 320, [(*map(int, box), 255)]) for box in boxes]
    return write_frames(path, frames, Fraction(25)), boxes


def test_face_crop_runs_with_scrfd_end_to_end_and_records_the_file(models_dir, tmp_path, capsys):
    video, boxes = moving_square_video(tmp_path / "square.mp4")
    store = tmp_path / "s.zarr"
    status = extract_main([str(video), "--store", str(store), "--features", "face_crop", "--models",
                           str(models_dir), "--no-progress", "--set", "face_crop.detector=scrfd",
                           "--set", "face_crop.scrfd_file=tiny_scrfd.onnx", "--set", "face_crop.detect_batch_frames=8"])
    assert status == 0, capsys.readouterr().err
    group = FeatureStore(str(store)).video("square")
    assert group.read("face_valid").all()
    np.testing.assert_allclose(group.read("face_box"), boxes, atol=2.5)
    crops = group.read("face_crop")
    assert crops.shape == (20, 112, 112, 3) and crops[:, 56, 56].min() > 200  # the square fills the aligned crop
    provenance = dict(group.array("face_crop").attrs)["provenance"]
    assert provenance["weights"]["detector"] == [{
        "file": "tiny_scrfd.onnx", "sha256": file_sha256(models_dir / "tiny_scrfd.onnx"),
        "source": provenance["weights"]["detector"][0]["source"],
        "license": "insightface pretrained models: non-commercial research use only"}]
    parameters = provenance["parameters"]
    assert parameters["detector"].startswith("SCRFD") and parameters["scrfd_file"] == "tiny_scrfd.onnx"
    assert "subsample" not in parameters and "onnxruntime" in provenance["libraries"]
    assert dict(group.array("face_score").attrs)["description"] == "SCRFD confidence"


@pytest.mark.parametrize("file_name", ["det_10g.onnx", "my_scrfd.onnx"])
def test_a_missing_scrfd_file_stops_the_run_with_one_line_naming_it(tmp_path, capsys, monkeypatch, file_name):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    store = tmp_path / "never.zarr"
    status = extract_main([str(SAMPLE), "--store", str(store), "--features", "face_crop", "--models",
                           str(tmp_path / "models"), "--set", "face_crop.detector=scrfd",
                           "--set", f"face_crop.scrfd_file={file_name}"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and not store.exists()
    assert error.startswith(f"extract: {file_name}: weights file missing; put it in ")
    if file_name == "det_10g.onnx":  # insightface's: its pinned sha256 and how to fetch it
        assert "sha256 5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91" in error
        assert "python -m extract models fetch face_crop --set face_crop.detector=scrfd" in error


def test_an_unknown_detector_or_unusable_scrfd_setting_is_a_usage_error_naming_it():
    with pytest.raises(UsageError, match="face_crop.detector='retinaface': choose one of mtcnn, scrfd"):
        registry.create("face_crop", overrides={"detector": "retinaface"})
    with pytest.raises(UsageError, match=r"--set face_crop.scrfd_input_px=\[600, 600\]: .* multiples of 32"):
        registry.create("face_crop", overrides={"detector": "scrfd", "scrfd_input_px": (600, 600)})


def test_mtcnn_stays_the_default_with_its_provenance_unchanged():
    extractor = registry.create("face_crop")
    parameters = extractor.parameters()
    assert parameters["detector"] == "MTCNN (facenet-pytorch, weights from its wheel)"
    assert not any(key.startswith("scrfd") for key in parameters) and parameters["subsample"] == 2
    assert [w["file"] for w in extractor.weights_provenance()["detector"]] == ["pnet.pt", "rnet.pt", "onet.pt"]
    assert list(extractor.weights()) == ["pnet.pt", "rnet.pt", "onet.pt", "landmarks", "reidentification"]
    assert extractor.libraries[:3] == ("numpy", "torch", "facenet-pytorch")
