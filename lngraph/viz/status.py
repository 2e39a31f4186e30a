"""Each node's predicted status and the ground truth's judgement of a prediction (numpy only;
what ``lngraph match`` needs for its markups without drawing anything)."""

from __future__ import annotations

import numpy as np

from lngraph.io.cohort import ScanPair
from lngraph.io.matches import PairPrediction


def node_status(pred: PairPrediction) -> tuple[np.ndarray, np.ndarray]:
    """The predicted status of every src node and every dst node (object arrays of strings)."""
    src = np.full(pred.n_src, "disappeared", dtype=object)
    dst = np.full(pred.n_dst, "new", dtype=object)
    src[pred.matches[:, 0]] = "matched"
    dst[pred.matches[:, 1]] = "matched"
    return src, dst


def wrong_matches(pair: ScanPair, pred: PairPrediction) -> np.ndarray | None:
    """``[M]`` True where the ground truth contradicts a predicted match; None without GT."""
    if not pair.has_ground_truth:
        return None
    truth = {tuple(m) for m in pair.gt_matches().tolist()}
    return np.array([tuple(m) not in truth for m in pred.matches.tolist()], dtype=bool)


def missed_matches(pair: ScanPair, pred: PairPrediction) -> np.ndarray:
    """``[K, 2]`` ground-truth matches absent from the prediction (empty without GT)."""
    if not pair.has_ground_truth:
        return np.zeros((0, 2), dtype=np.int64)
    predicted = {tuple(m) for m in pred.matches.tolist()}
    return np.asarray([m for m in pair.gt_matches().tolist() if tuple(m) not in predicted],
                      dtype=np.int64).reshape(-1, 2)
