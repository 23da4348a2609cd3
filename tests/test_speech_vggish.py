"""``vggish``: torchvggish's network with a state dict the test builds under torchvggish's parameter names and PCA
parameters saved the way torchvggish ships them, loaded through the models search path; the front end's windows are
checked against clicks at known frame times of a 1-minute 29.97 fps video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CLICK_FRAMES
from extract.__main__ import main as extract_main
from extract.ingest import decode_video
from extract.run import run_extraction
from extract.speech.vggish import log_mel_rows, patch_start_rows, patches
from extract.weights import WeightsError
from features_store import FeatureStore
from media_factory import NTSC_FPS

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
STFT_HOP_S, STFT_WINDOW_S = 0.010, 0.025


@pytest.fixture(scope="module")
def vggish_models(tmp_path_factory) -> Path:
    """A models folder with a randomly initialised VGGish (torchvggish's keys) and PCA parameters: a rotation and
    means as numpy arrays in a torch file (torchvggish's format) and in an .npz (TensorFlow's)."""
    from torchvggish.torchvggish import VGG, make_layers

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    torch.save(VGG(make_layers(), postprocess=False).state_dict(), folder / "my_vggish.pth")
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.normal(size=(128, 128)))[0] * 100  # the random network's outputs are ~0.01
    means = rng.normal(0, 0.005, (128, 1))
    torch.save({"pca_eigen_vectors": rotation, "pca_means": means}, folder / "my_pca.pth")
    np.savez(folder / "my_pca.npz", pca_eigen_vectors=rotation, pca_means=means)
    return folder


@pytest.mark.parametrize("placement", ["forward", "centred"])
def test_click_lands_in_the_window_its_frame_owns(click_video, placement):
    """Each frame's patch starts at its frame time (forward) or is centred on it: the click at frame k's time
    is loudest in the STFT row of frame k's patch whose window centre is nearest the click, even 58 s in."""
    video = decode_video(click_video)
    rows = log_mel_rows(video.audio)
    start_rows = patch_start_rows(video.audio, video.frame_time, placement)
    offset_s = 0.0 if placement == "forward" else 0.48
    for frame in CLICK_FRAMES:
        click_s = float(Fraction(frame) / NTSC_FPS)
        patch = patches(rows, start_rows[[frame]])[0]
        loudest = int(np.argmax(patch.sum(axis=1)))
        patch_start_s = video.audio.start_time_s + start_rows[frame] * STFT_HOP_S
        assert abs(patch_start_s - (click_s - offset_s)) <= STFT_HOP_S / 2  # placed by frame_time, not i * hop
        row_centre_s = patch_start_s + loudest * STFT_HOP_S + STFT_WINDOW_S / 2
        assert abs(row_centre_s - click_s) <= STFT_WINDOW_S / 2, (frame, loudest)
        assert patch[loudest].sum() > np.median(patch.sum(axis=1)) + 15  # the click stands above the noise


def test_patches_outside_the_audio_read_as_silence(click_video):
    video = decode_video(click_video)
    rows = log_mel_rows(video.audio)
    first = patches(rows, np.array([-10]))[0]
    assert np.all(first[:10] == np.float32(np.log(0.01))) and np.array_equal(first[10:], rows[:86])


def test_vggish_with_user_weights(vggish_models, tmp_path):
    location = str(tmp_path / "v.zarr")
    settings = {"vggish": {"weights_file": "my_vggish.pth", "pca_file": "my_pca.pth"}}
    report = run_extraction([SAMPLES / "grid_id2_vcd_swwp2s.mpg"], location, ["vggish"], progress=False,
                            models_dir=vggish_models, settings=settings)
    assert not report.failed, report.failed
    video = FeatureStore(location).video("grid_id2_vcd_swwp2s")
    out = video.read("vggish")
    assert out.shape == (video.n_frames, 128) and out.dtype == np.float32
    assert np.array_equal(out, np.round(out)) and out.min() >= 0 and out.max() <= 255  # AudioSet's 8-bit form
    assert len(np.unique(out, axis=0)) > video.n_frames // 2  # one window per frame, not one per 0.96 s
    attrs = video.array("vggish").attrs
    assert attrs["window_placement"].startswith("forward") and attrs["validity"] == "audio_valid"
    weights = attrs["provenance"]["weights"]
    assert weights["model"]["file"] == "my_vggish.pth" and weights["pca"]["file"] == "my_pca.pth"

    raw = str(tmp_path / "raw.zarr")  # the raw embedding needs no PCA file; TensorFlow's .npz PCA also loads
    for store, extra in ((raw, {"postprocess": False, "pca_file": "absent.pth", "window_placement": "centred"}),
                         (str(tmp_path / "npz.zarr"), {"pca_file": "my_pca.npz"})):
        report = run_extraction([SAMPLES / "grid_id2_vcd_swwp2s.mpg"], store, ["vggish"], progress=False,
                                models_dir=vggish_models, settings={"vggish": {**settings["vggish"], **extra}})
        assert not report.failed, report.failed
    np.testing.assert_array_equal(FeatureStore(str(tmp_path / "npz.zarr")).video("grid_id2_vcd_swwp2s")
                                  .read("vggish"), out)
    raw_out = FeatureStore(raw).video("grid_id2_vcd_swwp2s").read("vggish")
    assert raw_out.min() >= 0 and not np.array_equal(raw_out, np.round(raw_out))  # ReLU outputs, not quantised
    assert len(np.unique(raw_out, axis=0)) == len(raw_out)  # one window per frame, not one per 0.96 s



def test_vggish_weights_problems_name_the_file(vggish_models, tmp_path, capsys):
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    report = run_extraction([SAMPLES / "grid_id2_vcd_swwp2s.mpg"], str(tmp_path / "w.zarr"), ["vggish"],
                            progress=False, models_dir=tmp_path,
                            settings={"vggish": {"weights_file": "wrong.pth", "postprocess": False}})
    assert "wrong.pth: does not fit the vggish network" in next(iter(report.failed.values()))

    code = extract_main([str(SAMPLES), "--store", str(tmp_path / "x.zarr"), "--features", "vggish",
                         "--models", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2 and "vggish-10086976.pth: weights file missing" in error
    assert "sha256 10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b" in error  # as published
    assert "make weights FEATURES=vggish" in error

    (tmp_path / "vggish-10086976.pth").write_bytes((vggish_models / "my_vggish.pth").read_bytes())
    (tmp_path / "vggish_pca_params-970ea276.pth").write_bytes((vggish_models / "my_pca.pth").read_bytes())
    with pytest.raises(WeightsError, match="is not the expected 10086976"):  # not the published file
        run_extraction([SAMPLES / "grid_id2_vcd_swwp2s.mpg"], str(tmp_path / "y.zarr"), ["vggish"],
                       progress=False, models_dir=tmp_path)
