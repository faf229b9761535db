"""Classification metrics: per-class figures and the macro average (scikit-learn's convention)."""

import pytest

from edgecnn.core.metrics import compute_metrics


def test_two_classes_classified_perfectly_out_of_three_report_macro_f1_one():
    m = compute_metrics([0, 0, 1, 1], [0, 0, 1, 1], ["a", "b", "c"])
    assert m.accuracy == 1.0
    assert m.to_dict()["macro_f1"] == 1.0  # not 0.667: c has neither images nor predictions
    assert m.macro_f1 == 1.0
    assert m.per_class["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_a_class_with_support_but_no_predictions_counts_as_zero():
    # c has one image, never predicted: its F1 is 0 and it is averaged in (as scikit-learn does).
    m = compute_metrics([0, 1, 2], [0, 1, 0], ["a", "b", "c"])
    f1_a = 2 * 0.5 * 1.0 / 1.5
    assert m.per_class["c"]["f1"] == 0.0
    assert m.macro_f1 == pytest.approx((f1_a + 1.0 + 0.0) / 3)


def test_a_class_predicted_but_absent_counts_as_zero():
    # c has no images but was predicted once: a false positive, so it is averaged in with F1 0.
    m = compute_metrics([0, 1, 1], [0, 1, 2], ["a", "b", "c"])
    f1_b = 2 * 1.0 * 0.5 / 1.5
    assert m.per_class["c"]["support"] == 0 and m.per_class["c"]["f1"] == 0.0
    assert m.macro_f1 == pytest.approx((1.0 + f1_b + 0.0) / 3)


def test_no_images_give_macro_f1_zero():
    m = compute_metrics([], [], ["a", "b"])
    assert m.macro_f1 == 0.0 and m.to_dict()["macro_f1"] == 0.0
