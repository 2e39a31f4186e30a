"""The validation selection score on hand-made metrics."""

import math

import pytest
import torch

from lngraph.metrics.matching import COUNT_FIELDS
from lngraph.train.module import pooled_metrics, selection_score

NAN = math.nan


def metrics(f1, nlr, new_precision, dlr, disappeared_precision):
    return {"f1": f1, "nlr": nlr, "new_precision": new_precision, "dlr": dlr,
            "disappeared_precision": disappeared_precision}


def test_score_adds_the_f1_of_the_unmatched_classes():
    # F1_new = 2 * 1 * 0.5 / 1.5 = 2/3; F1_dis = 1
    assert selection_score(metrics(0.8, 1.0, 0.5, 1.0, 1.0)) == pytest.approx(0.8 + 5 / 6)


def test_leaving_everything_unmatched_does_not_pay():
    # all unmatched: NLR = DLR = 1 but with poor precision, F1 = 0
    lazy = selection_score(metrics(0.0, 1.0, 0.1, 1.0, 0.1))
    assert lazy == pytest.approx(2 * 0.1 / 1.1)
    assert lazy < selection_score(metrics(0.9, 0.5, 0.5, 0.5, 0.5))


def test_classes_without_ground_truth_are_left_out_and_nan_counts_zero():
    assert selection_score(metrics(0.5, NAN, NAN, 1.0, 1.0)) == pytest.approx(1.5)
    assert selection_score(metrics(NAN, NAN, NAN, NAN, NAN)) == 0.0
    assert selection_score(metrics(0.5, 0.0, NAN, NAN, NAN)) == pytest.approx(0.5)


def test_pooled_metrics_from_counts():
    counts = dict.fromkeys(COUNT_FIELDS, 0)
    counts.update(n_pred_matches=4, n_correct_matches=3, n_gt_matches=6, n_pred_new=2,
                  n_correct_new=1, n_gt_new=1)
    m = pooled_metrics(torch.tensor([counts[k] for k in COUNT_FIELDS], dtype=torch.float64))
    assert m["precision"] == 0.75 and m["recall"] == 0.5 and m["f1"] == pytest.approx(0.6)
    assert m["nlr"] == 1.0 and m["new_precision"] == 0.5 and math.isnan(m["dlr"])
