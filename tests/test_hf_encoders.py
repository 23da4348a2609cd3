"""Hugging Face encoders on the frame timeline (``hf_audio:<name>``, ``hf_vision:<name>``): tiny models of each family
built here from transformers configs (random weights, ``save_pretrained``), loaded by the real loader, and checked
against references this file computes itself: the model run once on the whole signal (or on the crops through the
folder's own processor), rows picked and averaged by time with the row spans derived here from the model's layers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from extract import registry
from extract.ingest import decode_video
from extract.encoders.timeline import ConvLayer, FrameAverager, RowGrid, frame_row_ranges
from extract.encoders.vision import prefix_tokens
from features_store import FeatureStore

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
GRID_CLIP = REPO / "samples" / "grid_id2_vcd_swwp2s.mpg"
CREMA = "crema_d_1001_DFA_concat"
WAVEFORM_ENCODER = dict(conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_conv_pos_embeddings=8,
                        num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True)
WHISPER_WINDOW_S = 4  # the tiny Whisper's input: 400 log-Mel frames of 10 ms


def _save(model, processor, folder: Path) -> Path:
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def audio_models(tmp_path_factory) -> dict[str, Path]:
    from transformers import (HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model,
                              WavLMConfig, WavLMModel, WhisperConfig, WhisperFeatureExtractor, WhisperModel)

    root = tmp_path_factory.mktemp("hf_audio")
    torch.manual_seed(0)
    folders = {name: _save(model_class(config_class(**WAVEFORM_ENCODER)), Wav2Vec2FeatureExtractor(do_normalize=True),
                           root / name)
               for name, config_class, model_class in (("wav2vec2", Wav2Vec2Config, Wav2Vec2Model),
                                                       ("hubert", HubertConfig, HubertModel),
                                                       ("wavlm", WavLMConfig, WavLMModel))}
    whisper = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
                            max_source_positions=WHISPER_WINDOW_S * 50, max_target_positions=16, vocab_size=64,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    folders["whisper"] = _save(WhisperModel(whisper), WhisperFeatureExtractor(feature_size=16,
                                                                              chunk_length=WHISPER_WINDOW_S),
                               root / "whisper")
    return folders


@pytest.fixture(scope="module")
def vision_models(tmp_path_factory) -> dict[str, Path]:
    from transformers import (BitImageProcessor, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection,
                              Dinov2Config, Dinov2Model, ViTConfig, ViTImageProcessor, ViTModel)

    root = tmp_path_factory.mktemp("hf_vision")
    torch.manual_seed(0)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                 patch_size=8)
    return {
        "vit": _save(ViTModel(ViTConfig(**small)), ViTImageProcessor(size={"height": 32, "width": 32}), root / "vit"),
        "dinov2": _save(Dinov2Model(Dinov2Config(**small)),  # resize to 40 then centre-crop 32, as DINOv2's 256/224
                        BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}),
                        root / "dinov2"),
        "clip": _save(CLIPVisionModelWithProjection(CLIPVisionConfig(**small, projection_dim=16)),
                      CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                      root / "clip"),
    }


@pytest.fixture(scope="module")
def grid_video():
    return decode_video(GRID_CLIP)


def spans_s(model, processor, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) seconds of each output row's input, derived here from the model's layers: a waveform encoder's
    row j reads samples j * prod(strides) ... + receptive field - 1; Whisper's row j is conv2's output j over conv1's
    outputs 2j-1 ... 2j+1, each over log-Mel frames centred on multiples of the hop, each frame n_fft samples."""
    rate = processor.sampling_rate
    rows = np.arange(n_rows)
    if hasattr(model.config, "conv_kernel"):
        receptive, step = 1, 1
        for kernel, stride in zip(model.config.conv_kernel, model.config.conv_stride):
            receptive += (kernel - 1) * step
            step *= stride
        return (rows * step - 0.5) / rate, (rows * step + receptive - 0.5) / rate
    hop = processor.hop_length
    centre = 2 * rows * hop
    reach = 2 * hop + processor.n_fft / 2  # two 3-tap convolutions over frames one hop apart, each n_fft wide
    return (centre - reach) / rate, (centre + reach) / rate


def whole_signal_rows(folder: Path, samples: np.ndarray, layer: int) -> tuple[np.ndarray, object, object]:
    """The model run once over the whole track as its own processor prepares it: (rows, model, processor)."""
    from transformers import AutoFeatureExtractor, AutoModel

    processor = AutoFeatureExtractor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        if model.config.model_type == "whisper":  # its encoder on the padded window's log-Mel frames
            features = processor(samples, sampling_rate=16_000, return_tensors="pt").input_features
            hidden = model.get_encoder()(features, output_hidden_states=True).hidden_states
            n_rows = int(np.ceil(len(samples) / (2 * processor.hop_length)))
        else:
            values = processor(samples, sampling_rate=16_000, return_tensors="pt").input_values
            hidden = model(values, output_hidden_states=True).hidden_states
            n_rows = hidden[0].shape[1]
    return hidden[layer][0, :n_rows].numpy(), model, processor


def rows_by_time(rows: np.ndarray, starts_s: np.ndarray, ends_s: np.ndarray, frame_time_s: np.ndarray,
                 width_s: float) -> np.ndarray:
    """Per frame, the mean of the rows whose span overlaps [t - width/2, t + width/2] (a loop, the plain way)."""
    out = np.zeros((len(frame_time_s), rows.shape[1]), np.float32)
    for i, t in enumerate(frame_time_s):
        overlapping = (starts_s < t + width_s / 2) & (ends_s > t - width_s / 2)
        out[i] = rows[overlapping].mean(0)
    return out


@pytest.mark.parametrize("family, layer", [("wav2vec2", -1), ("hubert", 1), ("wavlm", 2), ("whisper", -1)])
def test_audio_encoder_rows_are_averaged_onto_the_frames_by_time(audio_models, grid_video, family, layer):
    """The GRID clip (3 s) in one encoder window (no context needed): frame i equals the mean of the whole-signal
    rows whose input overlaps the frame interval centred on its time."""
    extractor = registry.create(f"hf_audio:{audio_models[family]}", overrides={"layers": (layer,), "window_s": 10.0,
                                                                                       "context_s": 0.0})
    out = extractor.extract(grid_video)[extractor.name]
    audio = grid_video.audio
    rows, model, processor = whole_signal_rows(audio_models[family], audio.samples, layer)
    starts_s, ends_s = spans_s(model, processor, len(rows))
    width_s = grid_video.frame_interval_s
    expected = rows_by_time(rows, starts_s, ends_s, grid_video.frame_time - audio.start_time_s, width_s)
    valid = out.schema.validity == "audio_valid"
    assert valid and out.data.shape == (grid_video.n_frames, 32) and out.data.dtype == np.float32
    np.testing.assert_allclose(out.data, expected, atol=2e-5, rtol=1e-4)
    assert out.attrs["frame_window_s"] == pytest.approx(0.04)
    assert out.attrs["row_hop_s"] == pytest.approx(0.005 if family != "whisper" else 0.02)


def test_long_audio_in_windows_equals_the_whole_signal_away_from_window_borders(audio_models, grid_video):
    """1 s windows with 0.25 s of context each side against one pass over the 3 s clip: the convolutional rows are
    the same everywhere (float error); hidden states differ only by what attention sees beyond the context (a random
    model attends nearly uniformly over its whole input, the worst case): under 2 % of their spread."""
    folder = audio_models["wav2vec2"]
    for settings, tolerance in (({"output": "conv_features"}, 1e-5), ({"output": "conv_features", "context_s": 0.0},
                                                                      1e-5),
                                ({"layers": (2,)}, 0.02), ({"layers": (0, 2), "layer_pooling": "stack"}, 0.02)):
        settings = {"context_s": 0.25, **settings}  # no context: windows still hold their last row's whole input
        windowed = registry.create(f"hf_audio:{folder}", overrides={**settings, "window_s": 1.0})
        whole = registry.create(f"hf_audio:{folder}", overrides={**settings, "window_s": 10.0, "context_s": 0.0})
        assert len(list(windowed.windows(len(grid_video.audio.samples)))) == (6 if settings["context_s"] else 3)
        assert len(list(whole.windows(len(grid_video.audio.samples)))) == 1
        a, b = (e.extract(grid_video)[e.name].data for e in (windowed, whole))
        assert a.shape == b.shape and a.shape[1] == (16 if "output" in settings else 32 * len(settings["layers"]))
        assert np.abs(b).mean() > 0.05  # rows, not zeros
        assert np.abs(a - b).max() <= tolerance * b.std(), (settings, np.abs(a - b).max() / b.std())


def test_whisper_windows_cover_a_track_longer_than_its_input(audio_models, grid_video):
    """A 3 s track through a tiny Whisper whose input is 1.5 s (0.3 s context): every frame gets rows, and frames in
    the middle of a window equal the model run on that window alone."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(1)
    folder = audio_models["whisper"].parent / "whisper_short"
    config = WhisperConfig.from_pretrained(audio_models["whisper"])
    config.max_source_positions = 75
    _save(WhisperModel(config), WhisperFeatureExtractor(feature_size=16, chunk_length=1.5), folder)
    extractor = registry.create(f"hf_audio:{folder}", overrides={"context_s": 0.3})
    windows = list(extractor.windows(len(grid_video.audio.samples)))
    step, context = 14_400, 4_800  # 1.5 s windows less 0.3 s each side; rows every 320 samples
    assert [w.start for w in windows] == [max(0, k * step - context) for k in range(4)]
    assert [w.keep_first for w in windows] == [0, 45, 90, 135] and windows[-1].keep_stop == 149  # ceil(47648 / 320)
    out = extractor.extract(grid_video)[extractor.name].data
    assert (np.abs(out).sum(1) > 0).all()
    second = windows[1]  # keeps rows 45 ... 89: 0.9 ... 1.8 s
    rows, model, processor = whole_signal_rows(folder, grid_video.audio.samples[second.start:second.start + 24_000],
                                               -1)
    starts_s, ends_s = spans_s(model, processor, len(rows))
    offset_s = second.start / 16_000
    times = grid_video.frame_time - grid_video.audio.start_time_s
    inside = (times > 0.95) & (times < 1.75)
    expected = rows_by_time(rows, starts_s + offset_s, ends_s + offset_s, times[inside], grid_video.frame_interval_s)
    assert inside.sum() == 20
    np.testing.assert_allclose(out[inside], expected, atol=2e-5, rtol=1e-4)


def test_frames_without_audio_are_zeros_and_invalid(audio_models, silent_video):
    extractor = registry.create(f"hf_audio:{audio_models['hubert']}")
    video = decode_video(silent_video)
    out = extractor.extract(video)[extractor.name]
    assert out.data.shape == (video.n_frames, 32) and not out.data.any()
    assert not extractor.validity(video)["audio_valid"].data.any()


def test_row_grid_of_whisper_and_frames_between_and_across_rows():
    """The grid's arithmetic on its own: Whisper's rows every 20 ms, each from 65 ms; a frame window that overlaps no
    row takes its nearest row; rows arriving in blocks add up to each frame's mean."""
    grid = RowGrid.of_convs([ConvLayer(3, 1, 1), ConvLayer(3, 2, 1)], 160, 0.0, 200.0, padded=True)
    assert (grid.hop_samples, grid.first_centre_samples, grid.half_span_samples) == (320, 0.0, 520.0)
    assert grid.n_rows(16_000) == 50
    rows_at = RowGrid(100, 50.0, 10.0)  # rows centred on 50, 150, 250, ... each +/- 10
    first, stop = frame_row_ranges(rows_at, 10, np.array([100.0, 420.0, 5000.0]), 20.0)
    assert first.tolist() == [0, 4, 9] and stop.tolist() == [1, 5, 10]  # nearest rows; past the end: the last
    first, stop = frame_row_ranges(rows_at, 10, np.array([150.0, 620.0]), 200.0)
    assert first.tolist() == [0, 5] and stop.tolist() == [3, 7]
    rows = np.random.default_rng(0).normal(size=(10, 3))
    averager = FrameAverager(first, stop, 3)
    for start, end in ((0, 2), (2, 6), (6, 10)):
        averager.add(start, rows[start:end])
    np.testing.assert_allclose(averager.means(), [rows[0:3].mean(0), rows[5:7].mean(0)], rtol=1e-6)


@pytest.fixture(scope="module")
def crops(sample_store):
    """48 real aligned faces of the CREMA-D sample, frames 10 and 20 marked as without a face."""
    video = sample_store.video(CREMA)
    faces = np.asarray(video.array("face_crop")[:48])
    valid = np.asarray(video.array("face_valid")[:48]).copy()
    assert valid.all()
    valid[[10, 20]] = False
    return faces, valid


@pytest.mark.parametrize("family, settings", [
    ("vit", {}), ("vit", {"token_pooling": "mean_patches", "layers": (1, 2), "layer_pooling": "stack"}),
    ("dinov2", {"token_pooling": "mean_patches"}), ("clip", {"layers": (0, 1, 2)}), ("clip", {"output": "projected"}),
])
def test_vision_encoder_rows_equal_the_model_on_the_processed_crops(vision_models, crops, family, settings):
    from transformers import AutoImageProcessor, AutoModel, CLIPVisionModelWithProjection

    faces, valid = crops
    extractor = registry.create(f"hf_vision:{vision_models[family]}", overrides={**settings, "batch_faces": 16})
    out = extractor.extract(None, {"face_crop": faces, "face_valid": valid})[extractor.name]

    processor = AutoImageProcessor.from_pretrained(vision_models[family])
    pixels = processor(images=list(faces[valid]), return_tensors="pt")["pixel_values"]
    model_class = CLIPVisionModelWithProjection if family == "clip" else AutoModel
    model = model_class.from_pretrained(vision_models[family]).eval()
    with torch.inference_mode():
        result = model(pixel_values=pixels, output_hidden_states=True)
    if settings.get("output") == "projected":
        expected = result.image_embeds
    else:
        tokens = [result.hidden_states[k] for k in settings.get("layers", (-1,))]
        pooled = [t[:, 1:].mean(1) if settings.get("token_pooling") == "mean_patches" else t[:, 0] for t in tokens]
        expected = (torch.cat(pooled, -1) if settings.get("layer_pooling") == "stack"
                    else torch.stack(pooled).mean(0))
    assert out.schema.validity == "face_valid" and out.data.shape == (48, expected.shape[1])
    np.testing.assert_allclose(out.data[valid], expected.numpy(), atol=1e-4, rtol=1e-4)
    assert not out.data[~valid].any()


def test_tokens_before_the_patch_grid():
    """Class, distillation and register tokens are told from the input's size and the patch size, square or not;
    without a patch size (or for merged patches) the grid is taken square."""
    assert prefix_tokens(197, (224, 224), 16) == 1 and prefix_tokens(198, (224, 224), 16) == 2
    assert prefix_tokens(261, (224, 224), 14) == 5  # DINOv2 with 4 registers
    assert prefix_tokens(141, (224, 160), 16) == 1  # 14 x 10 patches
    assert prefix_tokens(9, (32, 32), 16) == 5  # 2 x 2 patches after 1 class and 4 register tokens
    assert prefix_tokens(49, (224, 224), [4, 4]) == 0  # Swin's last stage: merged patches, a square grid
    assert prefix_tokens(17, (32, 32), None) == 1


def test_a_bad_setting_names_the_fix(vision_models, audio_models, crops):
    from features_store.errors import UsageError

    faces, valid = crops
    vit = registry.create(f"hf_vision:{vision_models['vit']}", overrides={"output": "projected"})
    with pytest.raises(UsageError, match="no image projection"):
        vit.extract(None, {"face_crop": faces[:2], "face_valid": valid[:2]})
    wav2vec2 = registry.create(f"hf_audio:{audio_models['wav2vec2']}", overrides={"layers": (7,)})
    with pytest.raises(UsageError, match="hidden states 0 ... 2"):
        wav2vec2.output_width
    with pytest.raises(Exception, match="model folder missing"):
        registry.create("hf_audio:no-such-encoder").check_weights()


def test_make_extract_then_make_train_on_the_encoders(sample_store, audio_models, vision_models, tmp_path):
    """The issue's commands: `make extract FEATURES=hf_audio:<folder>,hf_vision:<folder>,face_geometry` into (a copy
    of) the sample store, with a settings file for the audio encoder in the models folder, then `make train` on the
    three; provenance names the folders' files and sha256."""
    store = tmp_path / "store.zarr"
    shutil.copytree(sample_store.location, store)
    models = tmp_path / "models"
    shutil.copytree(audio_models["wavlm"], models / "wavlm")
    (models / "wavlm.json").write_text(json.dumps({"layers": [1, 2], "window_s": 2.0, "context_s": 0.5}))
    features = f"hf_audio:wavlm,hf_vision:{vision_models['dinov2']},face_geometry"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(["make", "--no-print-directory", "extract", "VIDEOS=samples", f"STORE={store}",
                           f"FEATURES={features}", f"MODELS={models}"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    opened = FeatureStore(str(store))
    video = opened.video(CREMA)
    audio = video.array("hf_audio_wavlm")
    assert audio.shape == (video.n_frames, 32) and video.array("hf_vision_dinov2").shape == (video.n_frames, 32)
    provenance = audio.attrs["provenance"]
    assert provenance["parameters"]["layers"] == [1, 2] and provenance["weights"]["folder"] == "wavlm"
    assert len(provenance["weights"]["sha256"]) == 64 and len(provenance["weights"]["config_sha256"]) == 64

    done = subprocess.run(["make", "--no-print-directory", "train", f"STORE={store}",
                           "FEATURES=hf_audio_wavlm,hf_vision_dinov2,face_geometry", "NAME=encoders",
                           f"TRAIN_ARGS=--runs-dir {tmp_path / 'runs'} --epochs 2 --quiet --set modality_dim=16 "
                           "--set gru_hidden=16 --set fc_dim=16"],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "config.json").read_text())
    assert config["features"] == ["hf_audio_wavlm", "hf_vision_dinov2", "face_geometry"]
    assert config["modality_dims"]["audio"] == 32 and config["modality_dims"]["face"] > 32
