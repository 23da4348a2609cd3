"""train.models: every registered model x task builds, runs frame-synchronously, trains one step, respects the mask;
attention fusion weights, the co-attention formula, and build_model's errors."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from eval.tasks import TASK_ORDER, au_task, expr_task, va_task
from train.models import (DEFAULT_MODEL, MODELS, REFERENCE_MODALITY_DIMS, ModelSpec, build_model,
                          build_model_from_config, co_attention, count_parameters, format_models_table,
                          model_config_dict, model_names, reference_parameter_counts)
from train.models.tcn import CoAttentionFusion
from train.models.trunks import TRUNK_MODELS

B, L, PAD = 2, 40, 13          # row 1 of every batch ends in PAD padded frames
TWO = {"audio": 6, "face": 10}
ONE = {"word": 7}
TASKS = {"va": va_task(), "expr": expr_task(), "au": au_task()}
SEQUENCE_MODELS = [name for name in MODELS if name not in TRUNK_MODELS]  # the trunks: tests/test_trunk_models.py
CASES = [(name, task) for name in SEQUENCE_MODELS for task in MODELS[name].tasks]
# narrower widths keep the many cases fast (CPU GRU backward is slow at 512 cells); the default widths run in
# test_default_configs_all_tasks_at_once_and_no_mask and test_transformer_mask_is_key_padding_mask
SMALL = {
    "m3t_concat": dict(modality_dim=32, gru_hidden=32, fc_dim=32),
    "m3t_attention": dict(modality_dim=32, gru_hidden=32, fc_dim=32, score_hidden=16),
    "gru_seed002": dict(visual_units=(32, 32, 16), audio_units=(16, 8)),
    "tcn_coattention": dict(channel_cap=64),
    "transformer_seed001": dict(d_model=32, num_heads=4, dim_feedforward=64),
    "tsav_tcn": dict(channels=32),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_batch(dims, seed=0, length=L):
    gen = torch.Generator().manual_seed(seed)
    inputs = {name: torch.randn(B, length, dim, generator=gen) for name, dim in dims.items()}
    mask = torch.ones(B, length, dtype=torch.bool)
    mask[1, length - PAD:] = False
    for x in inputs.values():
        x[1, length - PAD:] = 0.0
    return inputs, mask


def simple_loss(name, out, mask):
    weight = mask.unsqueeze(-1).float()
    if name == "va":
        return ((out - 0.3) ** 2 * weight).mean()
    if name == "expr":
        target = torch.zeros(out.shape[:2], dtype=torch.long)
        return torch.nn.functional.cross_entropy(out[mask], target[mask])
    return torch.nn.functional.binary_cross_entropy_with_logits(out, torch.ones_like(out), weight=weight)


@pytest.mark.parametrize("dims", [TWO, ONE], ids=["two_modalities", "one_modality"])
@pytest.mark.parametrize("name,task_name", CASES)
def test_forward_shapes_and_one_training_step(name, task_name, dims):
    torch.manual_seed(0)
    task = TASKS[task_name]
    model = build_model(name, dims, [task], **SMALL[name])
    assert model.spec is MODELS[name] and dataclasses.is_dataclass(model.config)
    inputs, mask = make_batch(dims)
    out = model(inputs, frame_mask=mask)
    assert set(out) == {task_name}
    assert out[task_name].shape == (B, L, task.n_outputs)
    assert torch.isfinite(out[task_name]).all()
    if task_name == "va":
        assert out["va"].abs().max() <= 1.0

    before = {key: value.detach().clone() for key, value in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    simple_loss(task_name, out[task_name], mask).backward()
    optimizer.step()
    changed = {key for key, value in model.named_parameters() if not torch.equal(value, before[key])}
    if len(dims) > 1:
        assert changed == set(before), f"unchanged: {sorted(set(before) - changed)}"
    else:  # one modality: attention over a single modality has constant weights, so its queries/keys get no gradient
        assert any(key.startswith("heads.") for key in changed) and len(changed) > len(before) // 2
    after = model(inputs, frame_mask=mask)[task_name]
    assert torch.isfinite(after).all() and not torch.equal(after, out[task_name])


def test_default_configs_all_tasks_at_once_and_no_mask():
    for name in SEQUENCE_MODELS:
        model = build_model(name, TWO, [TASKS[t] for t in MODELS[name].tasks])
        inputs, _ = make_batch(TWO)
        with torch.no_grad():
            out = model(inputs)
        expected = {t: (B, L, TASKS[t].n_outputs) for t in MODELS[name].tasks}
        assert {k: tuple(v.shape) for k, v in out.items()} == expected


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_real_frames_do_not_depend_on_padding(name):
    """Eval mode: real frames of a padded row equal the same row run alone at its true length, whatever the padding
    holds (the transformer through its key padding mask, bi-GRUs by packing, convolutions by causality)."""
    torch.manual_seed(0)
    model = build_model(name, TWO, [va_task(), expr_task()], **SMALL[name]).eval()
    inputs, mask = make_batch(TWO)
    noisy = {k: v.clone() for k, v in inputs.items()}
    for x in noisy.values():
        x[1, L - PAD:] = 100.0 * torch.randn(PAD, x.shape[-1])
    short = {k: v[1:, : L - PAD] for k, v in inputs.items()}
    with torch.no_grad():
        full = model(inputs, frame_mask=mask)
        garbage = model(noisy, frame_mask=mask)
        alone = model(short)
    for task in full:
        torch.testing.assert_close(garbage[task][:, : L - PAD], full[task][:, : L - PAD], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(full[task][1, : L - PAD], alone[task][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(garbage[task][0], full[task][0])  # the unpadded row is untouched


def test_transformer_mask_is_key_padding_mask():
    """Without the mask the padded (zero) frames are attended to; with it the real frames ignore them."""
    torch.manual_seed(0)
    model = build_model("transformer_seed001", TWO, [au_task()]).eval()
    inputs, mask = make_batch(TWO)
    short = {k: v[1:, : L - PAD] for k, v in inputs.items()}
    with torch.no_grad():
        masked = model(inputs, frame_mask=mask)["au"][1, : L - PAD]
        unmasked = model(inputs)["au"][1, : L - PAD]
        alone = model(short)["au"][0]
    torch.testing.assert_close(masked, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(unmasked, alone, atol=1e-3)


def test_attention_fusion_weights_sum_to_one():
    model = build_model("m3t_attention", {"audio": 6, "face": 10, "word": 7}, [va_task()])
    inputs, mask = make_batch({"audio": 6, "face": 10, "word": 7})
    model(inputs, frame_mask=mask)
    alpha = model.last_fusion_weights
    assert model.fusion_modalities == ("audio", "face", "word")
    assert alpha.shape == (B, L, 3)
    assert (alpha > 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(B, L))
    # eq. 5 softmaxes sigmoid scores in (0, 1): no modality can get more than e / (e + M - 1)
    assert alpha.max() < math.e / (math.e + 2)


def test_co_attention_formula_hand_computed():
    # two modalities, d_K = 2: Q = K = I, so Q K^T / sqrt(2) = I / sqrt(2) and each softmax row is (a, 1 - a)
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    attention = torch.tensor([[a, 1 - a], [1 - a, a]])
    out, scores = co_attention(q, q, v, plus_one="identity")  # (A + I) V
    torch.testing.assert_close(scores, attention)
    expected = torch.tensor([[(a + 1) * 1 + (1 - a) * 3, (a + 1) * 2 + (1 - a) * 4],
                             [(1 - a) * 1 + (a + 1) * 3, (1 - a) * 2 + (a + 1) * 4]])
    torch.testing.assert_close(out, expected)
    out, _ = co_attention(q, q, v, plus_one="ones")  # (A + 1) V, 1 the all-ones matrix
    expected = torch.tensor([[(a + 1) * 1 + (2 - a) * 3, (a + 1) * 2 + (2 - a) * 4],
                             [(2 - a) * 1 + (a + 1) * 3, (2 - a) * 2 + (a + 1) * 4]])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError):
        co_attention(q, q, v, plus_one="two")


def test_co_attention_block_applies_the_formula_per_frame():
    """With identity Q/K/V layers the block's output is LayerNorm((softmax(Q K^T / sqrt(d_K)) + I) V) per frame."""
    fusion = CoAttentionFusion({"face": 3, "audio": 3}, key_dim=3)
    with torch.no_grad():
        for layers in (fusion.query, fusion.key, fusion.value):
            for linear in layers.values():
                linear.weight.copy_(torch.eye(3))
                linear.bias.zero_()
    face, audio = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    out = fusion([face, audio])
    x = torch.stack([face, audio], dim=-2)                             # (B, L, M, d)
    a = torch.softmax(x @ x.transpose(-1, -2) / math.sqrt(3), dim=-1)
    expected = torch.nn.functional.layer_norm((a @ x + x).reshape(2, 5, 6), (6,))
    torch.testing.assert_close(out, expected)
    assert fusion.last_attention.shape == (2, 5, 1, 2, 2)


def test_coattention_visual_modality_choice():
    model = build_model("tcn_coattention", {"audio": 6, "face": 10}, [va_task()])
    assert model.visual_modality == "face"
    model = build_model("tcn_coattention", {"word": 7, "audio": 6}, [va_task()])
    assert model.visual_modality == "word"
    assert model.heads.heads["va"].in_features == model.tcns["word"].out_dim + 2 * 32


def test_paper_sizes():
    ref = REFERENCE_MODALITY_DIMS
    m3t = build_model("m3t_concat", ref, [va_task()])
    assert m3t.gru.num_layers == 2 and m3t.gru.bidirectional and m3t.gru.hidden_size == 512
    attn = build_model("m3t_attention", ref, [va_task()])
    assert all(g.hidden_size == 128 and g.num_layers == 1 and g.bidirectional for g in attn.scorers.values())
    seed2 = build_model("gru_seed002", ref, [va_task()])
    assert [g.hidden_size for g in seed2.branches["audio"].layers] == [128, 64]
    assert [g.hidden_size for g in seed2.branches["face"].layers] == [256, 256, 64]
    tcn = build_model("tcn_coattention", ref, [va_task()])
    assert tcn.config.channels_for(512) == (256, 256, 128, 128)
    assert tcn.config.channels_for(128) == (64, 64, 32, 32)
    assert tcn.config.channels_for(768) == (256, 256, 128, 128)
    assert [block.dilation for block in tcn.tcns["face"].blocks] == [1, 2, 4, 8]
    transformer = build_model("transformer_seed001", ref, [au_task()])
    assert len(transformer.encoder.layers) == 1
    tsav = build_model("tsav_tcn", ref, [va_task()])
    assert tsav.geometry == {"audio": (11, 30, False), "word": (8, 6, True), "face": (8, 6, True)}


def test_build_model_errors(monkeypatch):
    with pytest.raises(ValueError, match="known models: m3t_concat"):
        build_model("no_such_model", TWO, [va_task()])
    with pytest.raises(ValueError, match="valid fields: .*gru_hidden"):
        build_model("m3t_concat", TWO, [va_task()], gru_hiden=64)
    with pytest.raises(ValueError, match="unknown task"):
        build_model("m3t_concat", TWO, ["valence"])
    monkeypatch.setitem(MODELS, "va_only", ModelSpec("va_only", "test", MODELS["m3t_concat"].config_class,
                                                     MODELS["m3t_concat"].module_class, tasks=("va",)))
    with pytest.raises(ValueError, match="does not support task"):
        build_model("va_only", TWO, [va_task(), au_task()])
    build_model("va_only", TWO, [va_task()], gru_hidden=8)
    with pytest.raises(ValueError):
        build_model("m3t_concat", {}, [va_task()])
    with pytest.raises(ValueError):
        build_model("m3t_concat", TWO, [])
    with pytest.raises(ValueError):
        build_model("transformer_seed001", TWO, [va_task()], d_model=30, num_heads=8)
    model = build_model("m3t_concat", TWO, [va_task()], gru_hidden=8)
    with pytest.raises(ValueError, match="lack modality"):
        model({"audio": torch.zeros(B, L, 6)})
    with pytest.raises(ValueError, match="shape"):
        model({"audio": torch.zeros(B, L, 6), "face": torch.zeros(B, L, 9)})


def test_registry_config_round_trip_and_counts():
    assert DEFAULT_MODEL == "m3t_concat" == model_names()[0]
    assert model_names() == ["m3t_concat", "m3t_attention", "gru_seed002", "tcn_coattention",
                             "transformer_seed001", "tsav_tcn", "tsav", "m3t_3dvgg", "tdnn_transformer", "frame_cnn"]
    for name, spec in MODELS.items():
        assert dataclasses.is_dataclass(spec.config_class) and spec.config_class.__dataclass_params__.frozen
        assert set(spec.tasks) <= set(TASK_ORDER) and spec.description
    model = build_model("tcn_coattention", TWO, [va_task(), expr_task("abaw2020")], channel_fractions=[0.5, 0.25],
                        dropout=0.2)
    config = json.loads(json.dumps(model_config_dict(model)))
    assert config["name"] == "tcn_coattention" and config["modality_dims"] == TWO
    rebuilt = build_model_from_config(config)
    assert rebuilt.config == model.config and rebuilt.tasks == model.tasks
    rebuilt.load_state_dict(model.state_dict())
    assert count_parameters(rebuilt) == count_parameters(model) > 0
    counts = reference_parameter_counts()
    assert list(counts) == model_names() and all(n > 0 for n in counts.values())
    table = format_models_table()
    assert all(name in table for name in MODELS) and f"{counts[DEFAULT_MODEL]:,}" in table
