"""Face models whose weights users bring: each is built here as a small model with the real input/output signature,
saved in the format users have, then loaded through the real loader (models search path, weights_only / numpy-only
unpickling, onnxruntime) and run over the aligned faces of the sample store."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extract import registry
from extract.__main__ import main as extract_main
from extract.faces.senet import SENET_INPUT, SeNet, SenetShape
from extract.run import run_extraction
from extract.weights import MODELS_ENV, WeightsError, file_sha256
from features_store import FeatureStore

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CREMA = "crema_d_1001_DFA_concat"


def senet_state_dict(blocks, planes, expansion=4, reduction=16, n_classes=None, seed=0) -> dict[str, torch.Tensor]:
    """A randomly initialised SE-ResNet (VGGFace2-pytorch's parameter names) with random BatchNorm statistics."""
    torch.manual_seed(seed)
    out = tuple(p * expansion for p in planes)
    model = SeNet(SenetShape(64, tuple(blocks), tuple(planes), out, tuple(o // reduction for o in out), n_classes))
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        elif key.endswith("running_mean"):
            value.normal_(0.0, 0.1)
    return state


def pooled_linear_onnx(path: Path, size_px: int, n_out: int, layout: str = "NCHW", seed: int = 0) -> Path:
    """An ONNX face model with a real signature: (N, 3, S, S) or (N, S, S, 3) float32 in, (N, n_out) out:
    a 3x3 convolution, ReLU, global average pooling and a dense layer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    shape = ["N", 3, size_px, size_px] if layout == "NCHW" else ["N", size_px, size_px, 3]
    nodes, first = [], "input"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
        first = "nchw"
    nodes += [helper.make_node("Conv", [first, "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["conv"], ["relu"]),
              helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "dense_w", "dense_b"], ["output"])]
    initialisers = [numpy_helper.from_array(array.astype(np.float32), name) for name, array in (
        ("conv_w", rng.normal(0, 0.3, (16, 3, 3, 3))), ("conv_b", rng.normal(0, 0.1, 16)),
        ("dense_w", rng.normal(0, 0.5, (16, n_out))), ("dense_b", rng.normal(0, 0.1, n_out)))]
    graph = helper.make_graph(nodes, "face_model", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", n_out])],
                              initialisers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models folder with one small model per user-weights feature, in the formats their authors publish."""
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    folder = tmp_path_factory.mktemp("models")
    torch.save(senet_state_dict((1, 1, 1, 1), (16, 32, 64, 128)), folder / "senet_512.pth")  # M3T's 512-d width
    pooled_linear_onnx(folder / "iresnet_small.onnx", 112, 512)
    pooled_linear_onnx(folder / "enet_small_va_mtl.onnx", 224, 10)
    torch.manual_seed(0)
    torch.save(InceptionResnetV1(num_classes=16).eval().state_dict(), folder / "facenet_small.pt")
    pooled_linear_onnx(folder / "expnet.onnx", 96, 64, layout="NHWC")
    (folder / "expnet.json").write_text(json.dumps({
        "weights_file": "expnet.onnx", "input_size_px": 96, "colour_order": "BGR", "mean": [100.0, 110.0, 120.0],
        "std": [60.0, 60.0, 60.0], "layout": "NHWC", "source": "a test", "license": "CC0"}))
    return folder


USER_SETTINGS = {"senet": {"weights_file": "senet_512.pth"}, "iresnet": {"weights_file": "iresnet_small.onnx"},
                 "facenet": {"weights_file": "facenet_small.pt"},
                 "hsemotion": {"weights_file": "enet_small_va_mtl.onnx"}}
EXPECTED = {"senet": ("senet_512.pth", 512), "iresnet": ("iresnet_small.onnx", 512),
            "hsemotion": ("enet_small_va_mtl.onnx", 10), "facenet": ("facenet_small.pt", 512),
            "onnx_expnet": ("expnet.onnx", 64)}


@pytest.fixture(scope="session")
def user_store(sample_store, models_dir, tmp_path_factory) -> FeatureStore:
    """A copy of the sample store with every user-weights feature added by a real extraction run."""
    location = tmp_path_factory.mktemp("stores") / "user.zarr"
    shutil.copytree(sample_store.location, location)
    report = run_extraction([SAMPLES], str(location), ["senet", "iresnet", "hsemotion", "facenet", "onnx:expnet"],
                            progress=False, models_dir=models_dir, settings=USER_SETTINGS)
    assert not report.failed and len(report.extracted) == 2, report
    return FeatureStore(str(location))


@pytest.mark.parametrize("array_name", list(EXPECTED))
def test_user_weights_features_have_their_shape_dtype_and_recorded_sha256(user_store, models_dir, array_name):
    file_name, dim = EXPECTED[array_name]
    video = user_store.video(CREMA)
    values, valid = video.read(array_name), video.read("face_valid")
    assert values.shape == (video.n_frames, dim) and values.dtype == np.float32
    assert not values[~valid].any() and np.isfinite(values).all()
    assert np.std(values[valid], axis=0).max() > 1e-4  # the faces, not a constant, went through the model
    attrs = dict(video.array(array_name).attrs)
    assert attrs["validity"] == "face_valid"
    weights = attrs["provenance"]["weights"]
    assert weights["file"] == file_name and weights["sha256"] == file_sha256(models_dir / file_name)


def test_onnx_config_sets_size_colour_order_normalisation_and_layout(user_store, models_dir):
    """onnx:<name> prepares faces as its JSON config says: checked against onnxruntime on faces prepared by hand."""
    import onnxruntime
    from PIL import Image

    video = user_store.video(CREMA)
    frame = int(np.flatnonzero(video.read("face_valid"))[5])
    crop = video.read("face_crop")[frame]
    small = np.asarray(Image.fromarray(crop).resize((96, 96), Image.Resampling.BILINEAR)).astype(np.float32)
    by_hand = ((small[..., ::-1] - np.array([100.0, 110.0, 120.0], np.float32)) / 60.0)[None]
    session = onnxruntime.InferenceSession(str(models_dir / "expnet.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(video.read("onnx_expnet")[frame], session.run(None, {"input": by_hand})[0][0],
                               rtol=1e-4, atol=1e-5)
    parameters = dict(video.array("onnx_expnet").attrs)["provenance"]["parameters"]
    assert parameters["input"] == "96 x 96 BGR, (pixel - [100.0, 110.0, 120.0]) / [60.0, 60.0, 60.0], NHWC"


def test_hsemotion_names_its_columns(user_store):
    columns = dict(user_store.video(CREMA).array("hsemotion").attrs)["columns"]
    assert columns[:8] == ["anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    assert columns[8:] == ["valence", "arousal"]


def test_senet50_loads_from_a_numpy_pickle_as_vggface2_pytorch_publishes_it(sample_store, tmp_path):
    """The full SENet-50 shape (2048-d pooled) from ``senet50_ft_weight.pkl``-style numpy pickle, default name."""
    state = senet_state_dict((3, 4, 6, 3), (64, 128, 256, 512), n_classes=8631)
    with (tmp_path / "senet50_ft_weight.pkl").open("wb") as handle:
        pickle.dump({key: value.numpy() for key, value in state.items() if "num_batches" not in key}, handle)
    extractor = registry.create("senet", models_dir=tmp_path)
    video = sample_store.video(CREMA)
    crops = video.read("face_crop")[:3]
    valid = np.array([True, False, True])
    out = extractor.extract(None, {"face_crop": crops, "face_valid": valid})["senet"].data
    assert out.shape == (3, 2048) and out.dtype == np.float32 and not out[1].any()
    reference = SeNet(SenetShape.of(state)).eval()
    reference.load_state_dict(state)
    with torch.inference_mode():
        expected = reference(torch.from_numpy(SENET_INPUT.prepare(crops[[0, 2]]))).numpy()
    np.testing.assert_allclose(out[[0, 2]], expected, rtol=1e-4, atol=1e-4)
    assert extractor.weights_provenance()["sha256"] == file_sha256(tmp_path / "senet50_ft_weight.pkl")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    with (tmp_path / "senet50_ft_weight.pkl").open("wb") as handle:
        pickle.dump({"conv1.weight": Exploit()}, handle)
    extractor = registry.create("senet", models_dir=tmp_path)
    with pytest.raises(WeightsError, match="senet50_ft_weight.pkl.*builtins.print is not allowed"):
        extractor.model


def test_a_state_dict_of_another_network_is_refused_naming_the_file(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(8, 64, 1, 1)},
               tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="other.pt: does not fit the facenet network"):
        registry.create("facenet", models_dir=tmp_path, overrides={"weights_file": "other.pt"}).model


def test_missing_weights_stop_the_run_before_any_video_naming_file_and_place(tmp_path, monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    store = tmp_path / "never.zarr"
    with pytest.raises(WeightsError) as error:
        run_extraction([SAMPLES], str(store), ["fer", "hsemotion"], progress=False, models_dir=tmp_path / "mine")
    message = str(error.value)
    assert message.startswith("enet_b0_8_va_mtl.onnx: weights file missing; put it in ")
    assert str((tmp_path / "mine").resolve()) in message and "face-emotion-recognition" in message
    assert not store.exists()


def test_a_pinned_published_file_with_another_sha256_is_refused(tmp_path):
    (tmp_path / "glintr100.onnx").write_bytes(b"not the insightface model")
    with pytest.raises(WeightsError, match="glintr100.onnx: sha256 .* is not the expected 4ab1d643"):
        registry.create("iresnet", models_dir=tmp_path).check_weights()


def test_a_sha256_the_user_pins_in_sha256sums_is_checked(tmp_path):
    weights = tmp_path / "senet50_ft_weight.pkl"
    weights.write_bytes(b"weights the user brought")
    extractor = registry.create("senet", models_dir=tmp_path)
    extractor.check_weights()  # nothing pinned: accepted, its sha256 goes into the provenance
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  other.pt\n{file_sha256(weights)} *senet50_ft_weight.pkl\n")
    extractor.check_weights()
    (tmp_path / "SHA256SUMS").write_text(f"{'ab' * 32}  senet50_ft_weight.pkl\n")
    with pytest.raises(WeightsError, match=f"senet50_ft_weight.pkl: sha256 {file_sha256(weights)} is not the "
                                           f"{'ab' * 32} that .*SHA256SUMS lists"):
        extractor.check_weights()


def test_weights_are_found_through_the_environment_variable_too(models_dir, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, str(models_dir))
    extractor = registry.create("facenet", overrides={"weights_file": "facenet_small.pt"})
    assert extractor.weights()["model"].path(extractor.models_search_path) == models_dir / "facenet_small.pt"


def test_models_command_lists_found_and_missing_with_sha256(models_dir, capsys, monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert extract_main(["models", "--models", str(models_dir), "--json"]) == 0
    rows = {(row["feature"], row["file"]): row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    facenet = rows[("facenet", "20180402-114759-vggface2.pt")]  # the published name: the real file is pinned
    assert not facenet["found"] and facenet["sha256"].startswith("281cebca") and not facenet["non_commercial"]
    assert facenet["download"].endswith("/v2.2.9/20180402-114759-vggface2.pt")
    assert rows[("onnx:expnet", "expnet.onnx")]["found"] and rows[("onnx:expnet", "expnet.onnx")]["license"] == "CC0"
    assert not rows[("senet", "senet50_ft_weight.pkl")]["found"]
    assert rows[("fer", "emotion_model.hdf5")]["found"] and rows[("fer", "emotion_model.hdf5")]["license"] == "MIT"
    assert not rows[("iresnet", "glintr100.onnx")]["found"]
    assert rows[("iresnet", "glintr100.onnx")]["sha256"].startswith("4ab1d643")


def test_set_rejects_a_field_the_feature_does_not_have():
    with pytest.raises(ValueError, match="senet has no setting crop_size; its settings: batch_faces, weights_file"):
        registry.create("senet", overrides={"crop_size": 128})
    assert registry.parse_setting("face_crop.crop_size_px=128") == ("face_crop", "crop_size_px", 128)
    assert registry.parse_setting("onnx:expnet.mean=[1, 2, 3]") == ("onnx:expnet", "mean", (1, 2, 3))
