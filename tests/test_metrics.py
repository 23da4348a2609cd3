"""eval.metrics: hand-checked worked examples of every ABAW criterion, and the concatenated vs per-video views."""

from __future__ import annotations

import numpy as np
import pytest

from eval.metrics import (
    au_score,
    ccc,
    concatenate_valid,
    expr_score,
    mean_over_videos,
    per_video,
    va_score,
)
from eval.tasks import au_task, expr_task, va_task

TOL = 1e-6

# EXPR: per-class F1 0.5 (class 0), 0.8 (class 1), 2/3 (class 2); accuracy 4/6
EXPR_GOLD = [0, 0, 1, 1, 2, 2]
EXPR_PRED = [0, 1, 1, 1, 2, 0]
# AU: AU-a TP 1 FP 1 FN 1 -> F1 0.5; AU-b TP 1 FP 1 FN 0 -> F1 2/3; 5 of 8 entries right
AU_GOLD = [[1, 0], [0, 0], [1, 0], [0, 1]]
AU_PRED = [[1, 0], [1, 1], [0, 0], [0, 1]]


def test_ccc_worked_examples():
    # means 1/2 and 2/3, variances 1/6 and 2/9, covariance 1/6: (1/3) / (1/6 + 2/9 + 1/36) = 0.8
    assert ccc([0, 0.5, 1], [0, 1, 1]) == pytest.approx(0.8, abs=TOL)
    assert ccc([0, 0, 0], [0, 1, 1]) == 0.0
    assert ccc([0, 1, 1], [0.3, 0.3, 0.3]) == 0.0
    assert ccc([2, 2], [2, 2]) == 0.0  # 0 / 0 is reported as 0, not NaN
    assert ccc([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0, abs=TOL)
    assert ccc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0, abs=TOL)


def test_ccc_rejects_mismatched_or_empty_input():
    with pytest.raises(ValueError):
        ccc([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        ccc([], [])


def test_va_score_per_dimension_and_mean():
    pred = np.array([[0, 0], [0.5, 1], [1, 2]])
    gold = np.array([[0, 0], [1, 1], [1, 2]])
    scores = va_score(pred, gold)
    assert scores["valence"] == pytest.approx(0.8, abs=TOL)
    assert scores["arousal"] == pytest.approx(1.0, abs=TOL)
    assert scores["mean"] == pytest.approx(0.9, abs=TOL)


def test_concatenated_vs_per_video_ccc():
    preds = {"A": np.array([0.0, 1.0]), "B": np.array([0.0, 1.0])}
    golds = {"A": np.array([0.0, 1.0]), "B": np.array([1.0, 2.0])}
    videos = per_video(ccc, preds, golds)
    assert videos["A"] == pytest.approx(1.0, abs=TOL)
    assert videos["B"] == pytest.approx(1 / 3, abs=TOL)
    assert mean_over_videos(videos) == pytest.approx(0.666667, abs=TOL)
    assert ccc(*concatenate_valid(preds, golds)) == pytest.approx(0.5, abs=TOL)


def test_concatenate_valid_drops_invalid_frames_and_needs_every_video():
    # the invalid frames carry values that would change the score if they were kept
    preds = {"A": np.array([[0, 0], [9, 9], [1, 1]]), "B": np.array([[0, 0], [1, 1], [7, 7]])}
    golds = {"A": np.array([[0, 0], [-5, -5], [1, 1]]), "B": np.array([[1, 1], [2, 2], [-5, -5]])}
    expected_pred, expected_gold = [[0, 0], [1, 1], [0, 0], [1, 1]], [[0, 0], [1, 1], [1, 1], [2, 2]]
    pred, gold = concatenate_valid(preds, golds, task=va_task())
    np.testing.assert_array_equal(pred, expected_pred)
    np.testing.assert_array_equal(gold, expected_gold)
    valid = {"A": np.array([True, False, True]), "B": np.array([True, True, False])}
    pred, gold = concatenate_valid(preds, golds, valid)
    np.testing.assert_array_equal(pred, expected_pred)
    assert va_score(pred, gold)["mean"] == pytest.approx(0.5, abs=TOL)
    assert per_video(va_score, preds, golds, valid)["B"]["mean"] == pytest.approx(1 / 3, abs=TOL)
    with pytest.raises(ValueError, match="no prediction"):
        concatenate_valid({"A": preds["A"]}, golds, valid)


def test_expr_score_abaw2020():
    scores = expr_score(EXPR_PRED, EXPR_GOLD, "abaw2020")
    assert scores["f1"] == pytest.approx(0.655556, abs=TOL)  # (0.5 + 0.8 + 2/3) / 3 classes present
    assert scores["accuracy"] == pytest.approx(0.666667, abs=TOL)
    assert scores["score"] == pytest.approx(0.659222, abs=TOL)  # 0.67 F1 + 0.33 accuracy


def test_expr_score_abaw2022_counts_absent_classes_as_zero():
    scores = expr_score(EXPR_PRED, EXPR_GOLD, "abaw2022")
    assert scores["f1"] == pytest.approx(0.245833, abs=TOL)  # (0.5 + 0.8 + 2/3) / 8 classes
    assert scores["accuracy"] == pytest.approx(0.666667, abs=TOL)
    assert scores["score"] == scores["f1"]
    assert expr_score(EXPR_PRED, EXPR_GOLD, "abaw2022", n_classes=3)["f1"] == pytest.approx(0.655556, abs=TOL)


def test_expr_score_counts_classes_only_predicted():
    # class 3 is predicted but never true: it is "present" for abaw2020 and scores F1 0
    scores = expr_score([0, 3], [0, 1], "abaw2020")
    assert scores["f1"] == pytest.approx(1 / 3, abs=TOL)
    assert scores["accuracy"] == pytest.approx(0.5, abs=TOL)


def test_expr_score_rejects_bad_input():
    with pytest.raises(ValueError):
        expr_score([0, 1], [0, -1], "abaw2020")
    with pytest.raises(ValueError):
        expr_score([0, 8], [0, 1], "abaw2022")
    with pytest.raises(ValueError):
        expr_score([0, 1], [0, 1], "abaw2019")
    with pytest.raises(ValueError):
        expr_score([0.2, 0.7], [0, 1], "abaw2020")


def test_au_score_worked_example():
    for protocol, score in (("abaw2020", 0.604167), ("abaw2022", 0.583333)):
        scores = au_score(AU_PRED, AU_GOLD, protocol)
        np.testing.assert_allclose(scores["f1_per_au"], [0.5, 0.666667], atol=TOL)
        assert scores["f1"] == pytest.approx(0.583333, abs=TOL)
        assert scores["accuracy"] == pytest.approx(0.625, abs=TOL)
        assert scores["score"] == pytest.approx(score, abs=TOL)


def test_au_absent_from_gold_and_prediction_scores_zero():
    scores = au_score([[1, 0], [0, 0]], [[1, 0], [0, 0]], "abaw2022")
    assert scores["f1_per_au"] == [1.0, 0.0]
    assert scores["accuracy"] == 1.0
    with pytest.raises(ValueError):
        au_score([[0.7, 0]], [[1, 0]], "abaw2022")


def test_per_video_scores_and_skips_videos_without_valid_frames():
    task = expr_task("abaw2022")
    preds = {"v1": np.array(EXPR_PRED), "v2": np.array([3, 3]), "v3": np.array([0, 1, 2, 5])}
    golds = {"v1": np.array(EXPR_GOLD), "v2": np.array([-1, -1]), "v3": np.array([0, 1, -1, 5])}
    scores = per_video(expr_score, preds, golds, task=task, protocol="abaw2020")
    assert set(scores) == {"v1", "v3"}
    assert scores["v1"]["score"] == pytest.approx(0.659222, abs=TOL)
    assert scores["v3"]["accuracy"] == 1.0
    assert mean_over_videos(scores)["accuracy"] == pytest.approx((2 / 3 + 1) / 2, abs=TOL)
    pred, gold = concatenate_valid(preds, golds, task=task)
    assert expr_score(pred, gold, "abaw2020")["accuracy"] == pytest.approx(7 / 9, abs=TOL)


def test_au_views_average_per_au_lists():
    task = au_task("abaw2020")
    preds = {"a": np.array(AU_PRED), "b": np.array([[1, 1], [0, 0]])}
    golds = {"a": np.array(AU_GOLD), "b": np.array([[1, 1], [-1, -1]])}
    scores = per_video(au_score, preds, golds, task=task, protocol="abaw2020")
    np.testing.assert_allclose(mean_over_videos(scores)["f1_per_au"], [0.75, 0.833333], atol=TOL)
    pred, gold = concatenate_valid(preds, golds, task=task)
    assert pred.shape == (5, 2)
    assert au_score(pred, gold, "abaw2020")["accuracy"] == pytest.approx(7 / 10, abs=TOL)
