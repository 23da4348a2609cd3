"""Trunk models (train.models.trunks) at tiny widths: the input contract, a training step on every supported task,
padding that never reaches real frames, input and route errors, pretrained weights and their provenance."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import pytest
import torch

from eval.tasks import au_task, expr_task, va_task
from train.models.backbones import video_resnet
from train.models.trunks import TRUNK_MODELS, FrameCnnConfig, M3T3DVggConfig, TdnnTransformerConfig, TsavConfig

B, L, S, C, BANDS = 2, 3, 32, 4, 16
TINY = (4, 8, 8, 16)
VECTORS = {"fer": 5, "au_features": 3}
TASKS = {"va": va_task, "expr": expr_task, "au": au_task}
CONFIGS = {
    "tsav": TsavConfig(visual_widths=TINY, aural_widths=TINY, spectrogram_rows=21),
    "m3t_3dvgg": M3T3DVggConfig(widths=(4, 8, 8, 16, 16), gru_hidden=8, fc_dim=8,
                                route=("valence=fer", "arousal=au_features", "arousal=fer")),
    "tdnn_transformer": TdnnTransformerConfig(tdnn_channels=(16, 16, 16, 16, 24), tdnn_dim=16, d_model=16,
                                              num_heads=2, dim_feedforward=32, spectrogram_rows=21),
    "frame_cnn": FrameCnnConfig(backbone="resnet18", widths=TINY, embedding_dim=16, tcn_channels=(8, 8)),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def dims_for(config, inputs=("face_clip", "spectrogram", *VECTORS)) -> dict:
    rows = config.spectrogram_rows or 21
    every = {"face_clip": (config.clip_frames, S, S, C), "spectrogram": (rows, BANDS), **VECTORS}
    return {name: every[name] for name in inputs}


def make_inputs(dims: dict, seed: int = 0, length: int = L) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    inputs = {}
    for name, dim in dims.items():
        if name == "face_clip":
            inputs[name] = torch.randint(0, 256, (B, length, *dim), dtype=torch.uint8, generator=gen)
            inputs["face_clip_valid"] = torch.rand(B, length, dim[0], generator=gen) > 0.2
        elif name == "spectrogram":
            inputs[name] = torch.randn(B, length, *dim, generator=gen) * 20 - 50
            inputs["spectrogram_valid"] = torch.ones(B, length, dim[0], dtype=torch.bool)
            inputs["spectrogram_valid"][0, 0, :3] = False  # the audio starts after the first rows
            inputs[name][~inputs["spectrogram_valid"]] = 0
        else:
            inputs[name] = torch.randn(B, length, dim, generator=gen)
    return inputs


def build(name: str, dims: dict | None = None, tasks=None, **overrides):
    config_class, module_class, supported, _ = TRUNK_MODELS[name]
    config = dataclasses.replace(CONFIGS[name], **overrides)
    tasks = tasks or [TASKS[task]() for task in supported]
    return module_class(dims_for(config) if dims is None else dims, tasks, config)


def test_registry_entries():
    assert list(TRUNK_MODELS) == ["tsav", "m3t_3dvgg", "tdnn_transformer", "frame_cnn"]
    for name, (config_class, module_class, tasks, description) in TRUNK_MODELS.items():
        config = config_class()
        assert {"clip_frames", "clip_dilation", "spectrogram_rows"} <= {f.name for f in dataclasses.fields(config)}
        assert set(tasks) <= {"va", "expr", "au"} and description
    assert (TsavConfig().clip_frames, TsavConfig().clip_dilation, TsavConfig().spectrogram_rows) == (8, 6, 1001)
    assert TRUNK_MODELS["m3t_3dvgg"][2] == ("va",)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_training_step_on_every_supported_task(name):
    torch.manual_seed(0)
    model = build(name).train()
    inputs = make_inputs(dims_for(model.config))
    frame_mask = torch.ones(B, L, dtype=torch.bool)
    frame_mask[0, -1] = False
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    outputs = model(inputs, frame_mask)
    assert set(outputs) == set(model.task_names)
    for task in model.tasks:
        out = outputs[task.name]
        assert out.shape == (B, L, task.n_outputs) and bool(torch.isfinite(out).all())
    loss = sum(out[frame_mask].float().pow(2).mean() for out in outputs.values())
    loss.backward()
    optimizer.step()
    trained = [key for (key, p), old in zip(model.named_parameters(), before) if not torch.equal(p, old)]
    first_conv = {"tsav": "visual.stem.0.weight", "m3t_3dvgg": "shared.0.0.weight",
                  "tdnn_transformer": "tdnn.layers.0.0.weight", "frame_cnn": "backbone.conv1.weight"}[name]
    assert first_conv in trained  # the trunk is trained end to end
    if name == "tsav":
        assert "aural.conv1.weight" in trained


@pytest.mark.parametrize("name, overrides", [
    ("m3t_3dvgg", {}), ("tdnn_transformer", {}), ("frame_cnn", {"head": "gru"}), ("frame_cnn", {"head": "transformer"}),
], ids=["m3t_3dvgg", "tdnn_transformer", "frame_cnn_gru", "frame_cnn_transformer"])
def test_padding_does_not_reach_real_frames(name, overrides):
    torch.manual_seed(1)
    model = build(name, **overrides)
    model.train()
    model(make_inputs(dims_for(model.config), seed=5))  # batch norms' running statistics away from 0 / 1
    model.eval()
    inputs = make_inputs(dims_for(model.config), seed=2)
    frame_mask = torch.ones(B, L, dtype=torch.bool)
    frame_mask[0, -1] = False
    other = {key: value.clone() for key, value in inputs.items()}
    for key, value in make_inputs(dims_for(model.config), seed=3).items():
        other[key][0, -1] = value[0, -1]  # different content in the padded frame
    with torch.no_grad():
        out = model(inputs, frame_mask)
        changed = model(other, frame_mask)
        short = model({key: value[:1, :-1] for key, value in inputs.items()})
    for task in model.task_names:
        assert torch.allclose(out[task][frame_mask], changed[task][frame_mask], atol=1e-5)
        assert torch.allclose(out[task][0, :-1], short[task][0], atol=1e-5)  # as if the window were shorter


def test_tsav_streams():
    dims_spec = dims_for(CONFIGS["tsav"], ("spectrogram",))
    audio_only = build("tsav", dims_spec)
    assert audio_only.visual is None and audio_only.aural is not None
    assert audio_only(make_inputs(dims_spec))["expr"].shape == (B, L, 8)
    dims_clip = dims_for(CONFIGS["tsav"], ("face_clip", "fer"))  # vector inputs are ignored
    video_only = build("tsav", dims_clip)
    assert video_only.aural is None and video_only.visual.stem[0].in_channels == C
    assert video_only(make_inputs(dims_clip))["va"].shape == (B, L, 2)
    with pytest.raises(ValueError, match="face_clip or spectrogram.*FEATURES=face_crop.*mel64"):
        build("tsav", {"fer": 5})
    with pytest.raises(ValueError, match="clip_frames is 8"):
        build("tsav", {"face_clip": (4, S, S, C)})


def test_m3t_routes_and_tasks():
    model = build("m3t_3dvgg")
    assert model.routes == {"valence": ("fer",), "arousal": ("au_features", "fer")}
    assert model.valence.gru.input_size == 16 + 5 and model.arousal.gru.input_size == 16 + 3 + 5
    everything = build("m3t_3dvgg", route=())
    assert everything.routes["valence"] == everything.routes["arousal"] == ("fer", "au_features")
    with pytest.raises(ValueError, match="no vector input 'senet'.*fer"):
        build("m3t_3dvgg", route=("valence=senet",))
    with pytest.raises(ValueError, match="BRANCH=INPUT"):
        build("m3t_3dvgg", route=("dominance=fer",))
    with pytest.raises(ValueError, match="task va"):
        build("m3t_3dvgg", tasks=[va_task(), expr_task()])
    with pytest.raises(ValueError, match="face_clip.*FEATURES=face_crop"):
        build("m3t_3dvgg", {"fer": 5, "au_features": 3})


def test_tdnn_needs_spectrogram_and_covers_its_context():
    with pytest.raises(ValueError, match="spectrogram.*mel64_fine"):
        build("tdnn_transformer", {"fer": 5})
    with pytest.raises(ValueError, match="15-row receptive field"):
        TdnnTransformerConfig(spectrogram_rows=11)
    model = build("tdnn_transformer", dims_for(CONFIGS["tdnn_transformer"], ("face_clip", "spectrogram")))
    assert model.fusion.in_features == 16  # no vector input; face_clip ignored
    assert model(make_inputs(model.modality_dims))["au"].shape == (B, L, 12)


@pytest.mark.parametrize("backbone", ["iresnet50", "resnet50"])
def test_frame_cnn_backbones(backbone):
    model = build("frame_cnn", backbone=backbone, head="gru", head_dim=8, head_layers=1)
    out = model(make_inputs(dims_for(model.config)))
    assert out["au"].shape == (B, L, 12) and bool(torch.isfinite(out["au"]).all())
    if backbone == "iresnet50":
        assert model.clip_input.normalization == "symmetric" and model.backbone.input_px == 28  # 32 px * 112 / 128
        assert isinstance(model.projection, torch.nn.Identity) and model.backbone.out_features == 16


def test_pretrained_weights_load_and_are_logged(tmp_path, caplog):
    state = video_resnet(TINY).state_dict()
    scratch = tmp_path / "scratch.pth"
    torch.save(state, scratch)
    sha256 = hashlib.sha256(scratch.read_bytes()).hexdigest()
    path = tmp_path / f"r2plus1d_18-{sha256[:8]}.pth"
    scratch.rename(path)
    with caplog.at_level(logging.INFO, logger="affectsync.train"):
        model = build("tsav", pretrained_visual=str(path))
    assert model.pretrained_sha256 == {"visual": sha256}
    assert torch.equal(model.visual.stem[0].weight[:, :3], state["stem.0.weight"])
    assert any("aural trunk starts from random weights" in r.message and "resnet18-f37072fd.pth" in r.message
               for r in caplog.records)
