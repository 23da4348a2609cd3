"""train.losses (CCC / CE / focal / BCE, multi-task total, alternating schedule) and train.pseudo_labels (TSAV)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval.metrics import ccc
from eval.tasks import EXPR_CLASSES_ABAW3, au_task, expr_task, va_task
from train.losses import (
    LossConfig,
    MultiTaskLoss,
    TaskSchedule,
    au_loss,
    au_pos_weight,
    ccc_loss,
    expr_loss,
    va_loss,
)
from train.pseudo_labels import fit_va_histograms, filter_inconsistent, pseudo_expr_probs, pseudo_va

HAPPY, SAD, NEUTRAL = (EXPR_CLASSES_ABAW3.index(name) for name in ("Happiness", "Sadness", "Neutral"))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_ccc_loss_is_one_minus_metric_ccc(generator):
    pred = torch.rand(2, 9, generator=generator, dtype=torch.float64)
    gold = torch.rand(2, 9, generator=generator, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    expected = np.mean([1 - ccc(pred[0], gold[0]), 1 - ccc(pred[1, :5], gold[1, :5])])
    assert float(ccc_loss(pred, gold, mask)) == pytest.approx(expected, abs=1e-6)
    # the worked example of eval.metrics: CCC 0.8
    loss = ccc_loss(torch.tensor([[0, 0.5, 1]]), torch.tensor([[0.0, 1, 1]]), torch.ones(1, 3, dtype=torch.bool))
    assert float(loss) == pytest.approx(0.2, abs=1e-6)


def test_ccc_loss_perfect_prediction_and_constant_sequence(generator):
    gold = torch.rand(3, 16, generator=generator)
    mask = torch.ones(3, 16, dtype=torch.bool)
    assert float(ccc_loss(gold.clone(), gold, mask)) == pytest.approx(0.0, abs=1e-5)
    constant = ccc_loss(torch.full((1, 4), 0.3), torch.full((1, 4), 0.3), torch.ones(1, 4, dtype=torch.bool))
    assert torch.isfinite(constant) and float(constant) == pytest.approx(1.0)


def test_ccc_loss_ignores_masked_frames_and_short_sequences(generator):
    pred = torch.rand(2, 8, generator=generator)
    gold = torch.rand(2, 8, generator=generator)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, :6] = True
    mask[1, 0] = True  # a single valid frame: no CCC, so the sequence is left out
    reference = ccc_loss(pred, gold, mask)
    pred2 = torch.where(mask, pred, torch.tensor(float("nan")))
    gold2 = torch.where(mask, gold, torch.tensor(-5.0))
    pred2[1, 0] = 42.0
    assert float(ccc_loss(pred2, gold2, mask)) == pytest.approx(float(reference), abs=1e-6)
    assert float(reference) == pytest.approx(1 - ccc(pred[0, :6], gold[0, :6]), abs=1e-5)


def test_ccc_loss_gradient_flows_only_to_valid_frames(generator):
    pred = torch.rand(2, 6, generator=generator).requires_grad_()
    pred_with_nan = torch.where(torch.arange(6) < 4, pred, torch.tensor(float("nan")))
    mask = (torch.arange(6) < 4).expand(2, 6)
    ccc_loss(pred_with_nan, torch.rand(2, 6, generator=generator), mask).backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[:, :4].abs().sum() > 0 and (pred.grad[:, 4:] == 0).all()
    empty = torch.rand(2, 6, requires_grad=True)
    loss = ccc_loss(empty, torch.rand(2, 6), torch.zeros(2, 6, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and (empty.grad == 0).all()


def test_va_loss_averages_valence_and_arousal(generator):
    pred = torch.rand(2, 10, 2, generator=generator)
    gold = torch.rand(2, 10, 2, generator=generator)
    gold[0, 7:] = -5.0  # invalid frames, even though the mask below says True
    mask = torch.ones(2, 10, dtype=torch.bool)
    loss, parts = va_loss(pred, gold, mask)
    assert float(loss) == pytest.approx(0.5 * float(parts["valence"] + parts["arousal"]), abs=1e-6)
    expected_valence = np.mean([1 - ccc(pred[0, :7, 0], gold[0, :7, 0]), 1 - ccc(pred[1, :, 0], gold[1, :, 0])])
    assert float(parts["valence"]) == pytest.approx(expected_valence, abs=1e-5)
    # a valence-only label (arousal -5) trains valence and leaves arousal alone
    gold[1, :, 1] = -5.0
    _, parts = va_loss(pred, gold, mask)
    assert float(parts["arousal"]) == pytest.approx(1 - ccc(pred[0, :7, 1], gold[0, :7, 1]), abs=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy(generator):
    logits = torch.randn(2, 5, 8, generator=generator)
    gold = torch.randint(0, 8, (2, 5), generator=generator)
    gold[1, 3:] = -1
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 0] = False
    valid = mask & (gold >= 0)
    reference = F.cross_entropy(logits[valid], gold[valid])
    assert float(expr_loss(logits, gold, mask, kind="ce")) == pytest.approx(float(reference), abs=1e-6)
    assert float(expr_loss(logits, gold, mask, kind="focal", gamma=0.0)) == pytest.approx(float(reference), abs=1e-6)
    # gamma > 0 down-weights every frame, so the loss shrinks
    assert float(expr_loss(logits, gold, mask, kind="focal", gamma=2.0)) < float(reference)
    weights = torch.arange(1.0, 9.0)
    weighted = F.cross_entropy(logits[valid], gold[valid], reduction="none") * weights[gold[valid]]
    expected = float(weighted.mean())  # divided by the number of frames, not by the sum of their weights
    assert float(expr_loss(logits, gold, mask, class_weights=weights)) == pytest.approx(expected, abs=1e-5)


def test_au_pos_weight_small_example():
    labels = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 0, 1], [-1, -1, -1], [1, -1, 0]], dtype=np.float32)
    # valid rows 0-3: positives (2, 0, 3), negatives (2, 4, 1); AU 2 has no positive -> clamped to 4 / 1
    np.testing.assert_allclose(au_pos_weight(labels), [1.0, 4.0, 1 / 3], rtol=1e-6)
    np.testing.assert_array_equal(au_pos_weight(np.full((2, 3), -1.0)), [1.0, 1.0, 1.0])


def test_au_loss_weights_positives_and_skips_invalid_rows(generator):
    logits = torch.randn(1, 4, 3, generator=generator)
    gold = torch.tensor([[[1.0, 0, 1], [0, 0, 1], [-1, -1, -1], [1, 0, 0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    weight = torch.tensor([2.0, 1.0, 0.5])
    rows = torch.tensor([0, 1, 3])
    expected = F.binary_cross_entropy_with_logits(logits[0, rows], gold[0, rows], pos_weight=weight)
    assert float(au_loss(logits, gold, mask, pos_weight=weight)) == pytest.approx(float(expected), abs=1e-6)


def _batch(generator, b=2, length=6):
    outputs = {
        "va": torch.randn(b, length, 2, generator=generator, requires_grad=True),
        "expr": torch.randn(b, length, 8, generator=generator, requires_grad=True),
        "au": torch.randn(b, length, 12, generator=generator, requires_grad=True),
    }
    labels = {
        "va": torch.rand(b, length, 2, generator=generator) * 2 - 1,
        "expr": torch.randint(0, 8, (b, length), generator=generator),
        "au": torch.randint(0, 2, (b, length, 12), generator=generator).float(),
    }
    masks = {name: torch.ones(b, length, dtype=torch.bool) for name in outputs}
    return outputs, labels, masks


def test_multitask_loss_combines_weighted_tasks(generator):
    tasks = {"va": va_task(), "expr": expr_task(), "au": au_task()}
    config = LossConfig(expr_loss="focal", lambda_expr=0.5, lambda_au=2.0)
    loss_fn = MultiTaskLoss(config, tasks, au_pos_weight=np.full(12, 3.0, np.float32))
    outputs, labels, masks = _batch(generator)
    total, parts = loss_fn(outputs, labels, masks)
    va, _ = va_loss(outputs["va"], labels["va"], masks["va"])
    expr = expr_loss(outputs["expr"], labels["expr"], masks["expr"], kind="focal")
    au = au_loss(outputs["au"], labels["au"], masks["au"], pos_weight=torch.full((12,), 3.0))
    assert total.item() == pytest.approx((va + 0.5 * expr + 2.0 * au).item(), abs=1e-5)
    assert parts["expr"] == pytest.approx(expr.item(), abs=1e-6) and parts["total"] == pytest.approx(total.item())
    assert set(parts) == {"va", "valence", "arousal", "expr", "au", "total"}
    total.backward()
    assert all(output.grad is not None and output.grad.abs().sum() > 0 for output in outputs.values())


def test_multitask_loss_with_missing_tasks_and_empty_masks(generator):
    tasks = {"va": va_task(), "expr": expr_task(), "au": au_task()}
    loss_fn = MultiTaskLoss(LossConfig(), tasks)
    outputs, labels, masks = _batch(generator)
    masks["expr"] = torch.zeros_like(masks["expr"])  # nothing labelled for EXPR in this batch
    labels["au"][:] = -1.0  # nor for AU (invalid code, mask all True)
    del labels["va"]  # and VA labels are not in the batch at all
    total, parts = loss_fn(outputs, labels, masks)
    assert set(parts) == {"total"} and total.item() == 0.0
    total.backward()  # still a graph to backpropagate through
    outputs, labels, masks = _batch(generator)
    total, parts = loss_fn(outputs, labels, masks, active=("au",))
    assert set(parts) == {"au", "total"}
    assert total.item() == pytest.approx(au_loss(outputs["au"], labels["au"], masks["au"]).item(), abs=1e-6)


def test_task_schedule_cycles():
    joint = TaskSchedule("joint", ("expr", "au"))
    assert joint.active_tasks(0, 0) == joint.active_tasks(3, 7) == ("expr", "au")
    by_epoch = TaskSchedule("epoch", ("expr", "au"))
    assert [by_epoch.active_tasks(epoch, 5) for epoch in range(4)] == [("expr",), ("au",), ("expr",), ("au",)]
    by_batch = TaskSchedule("batch", ("va", "expr", "au"))
    assert [by_batch.active_tasks(2, batch)[0] for batch in range(5)] == ["va", "expr", "au", "va", "expr"]
    with pytest.raises(ValueError):
        TaskSchedule("alternate", ("va",))
    with pytest.raises(ValueError):
        LossConfig(schedule="sometimes")


def test_filtering_rules_drop_exactly_the_contradictory_frames():
    va = np.array([
        [-0.1, 0.0],   # happy, negative valence: dropped
        [0.1, 0.0],    # happy, positive valence: kept
        [0.2, 0.1],    # sad, positive valence: dropped
        [-0.2, 0.1],   # sad, negative valence: kept
        [0.4, 0.4],    # neutral, norm 0.566 > 0.5: dropped
        [0.0, 0.5],    # neutral, norm 0.5 exactly: kept
        [-0.9, 0.0],   # no expression label: kept
        [-5.0, -5.0],  # happy without VA: kept
        [-0.9, -0.9],  # anger, far from neutral: no rule applies, kept
    ])
    expr = np.array([HAPPY, HAPPY, SAD, SAD, NEUTRAL, NEUTRAL, -1, HAPPY, EXPR_CLASSES_ABAW3.index("Anger")])
    keep = filter_inconsistent(va, expr, EXPR_CLASSES_ABAW3)
    np.testing.assert_array_equal(keep, [False, True, False, True, False, True, True, True, True])
    with pytest.raises(ValueError):
        filter_inconsistent(va, expr, ("Anger", "Happiness"))


def _toy_histograms(rng):
    """Happy frames in the positive-valence half, sad frames in the negative half, plus one contradictory sad."""
    happy = np.column_stack([rng.uniform(0.3, 0.9, 200), rng.uniform(0.1, 0.6, 200)])
    sad = np.column_stack([rng.uniform(-0.9, -0.3, 200), rng.uniform(-0.6, -0.1, 200)])
    va = np.vstack([happy, sad, [[0.8, 0.8]], [[-5.0, -5.0]]])
    expr = np.array([HAPPY] * 200 + [SAD] * 200 + [SAD, HAPPY])
    keep = filter_inconsistent(va, expr, EXPR_CLASSES_ABAW3)
    return fit_va_histograms(va, expr, len(EXPR_CLASSES_ABAW3), bins=10, keep=keep)


def test_fit_va_histograms_counts_filtered_frames_with_both_labels():
    hist = _toy_histograms(np.random.default_rng(0))
    assert hist.counts.shape == (8, 10, 10)
    assert hist.counts[HAPPY].sum() == 200 and hist.counts[SAD].sum() == 200  # the contradictory sad is not counted
    assert hist.counts[:, 5:, :].sum() == 200 and hist.counts[SAD, 5:, :].sum() == 0


def test_pseudo_va_lands_in_the_expression_quadrant():
    rng = np.random.default_rng(1)
    hist = _toy_histograms(rng)
    expr = np.array([HAPPY] * 50 + [SAD] * 50 + [-1, NEUTRAL, HAPPY])
    va = np.full((expr.size, 2), -5.0)
    va[-1] = [-0.5, 0.5]  # a real VA label is kept as it is
    out = pseudo_va(expr, hist, va=va, rng=rng)
    assert out.shape == (103, 2) and out.dtype == np.float32
    assert np.all(out[:50] > 0) and np.all(out[:50] <= 1)        # happy: positive valence and arousal
    assert np.all(out[50:100] < 0) and np.all(out[50:100] >= -1)  # sad: negative valence and arousal
    np.testing.assert_array_equal(out[100:102], -5.0)  # no expression / an expression with an empty histogram
    np.testing.assert_array_equal(out[102], [-0.5, 0.5])
    valence_only = pseudo_va(expr[:50], hist, components=("valence",), rng=rng)
    assert np.all(valence_only[:, 0] > 0) and np.all(valence_only[:, 1] == -5.0)
    # resampled on each call, as TSAV does every time the frame is seen
    assert not np.array_equal(pseudo_va(expr, hist, rng=rng), pseudo_va(expr, hist, rng=rng))


def test_pseudo_expression_probabilities_from_va_bins():
    hist = _toy_histograms(np.random.default_rng(2))
    va = np.array([[0.6, 0.3], [-0.6, -0.3], [0.0, 0.95], [-5.0, -5.0], [0.6, 0.3]])
    probs = pseudo_expr_probs(va, hist, expr=np.array([-1, -1, -1, -1, SAD]))
    assert probs.shape == (5, 8)
    assert probs[0, HAPPY] == pytest.approx(1.0) and probs[1, SAD] == pytest.approx(1.0)
    np.testing.assert_array_equal(probs[2:], 0.0)  # empty bin, no VA, already labelled
