r"""The asymmetric matcher's inference rule: rectangular Hungarian on the SEAG similarity, then
the SCB correction (DESIGN §4). Pure numpy; knows no model.

The rule, for a scan pair with similarity :math:`S \in [0, 1]^{n_1 \times n_2}` (the matcher
passes its matching score, which includes the position prior when it is on) and SCB scores
:math:`s` (Eq. 3; :math:`s_{ij}` needed at least where the assignment puts a pair):

1. Assign: maximum-score one-to-one assignment on :math:`S` (on :math:`(S + s) / 2` when
   ``reassign`` is set and :math:`s` is given for every pair). Every node of the smaller scan
   gets a partner at this step.
2. Correct: a pair whose decision score — :math:`s_{ij}` when SCB scores are given, else
   :math:`S_{ij}` — is below ``threshold`` is dropped; its earlier node becomes *disappeared*
   and its later node *new*.

Step 2 is the paper's use of SCB: the similarity decides *who* pairs with whom, the pair
classifier decides *whether* they are the same node. Re-assignment on the combined score is
off by default; it lets SCB also change partners and is kept as an option to be turned on
where the benchmark shows it helps.
"""

from __future__ import annotations

import numpy as np

from lngraph.matching.assignment import hungarian_max


def scb_correct(similarity: np.ndarray, scb: np.ndarray | None = None, threshold: float = 0.5,
                reassign: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment on the similarity, then the SCB correction (module docstring).

    Args:
        similarity: ``[n1, n2]`` SEAG similarity.
        scb: ``[n1, n2]`` SCB scores (Eq. 3), NaN where not computed; ``None`` without SCB.
        threshold: pairs whose decision score is below it are dropped.
        reassign: assign on ``(similarity + scb) / 2`` (needs ``scb`` everywhere).

    Returns:
        ``matches [M, 2]`` int64 (src, dst) sorted by src, and ``scores [M]`` — the decision
        score of each kept pair.

    Raises:
        ValueError: on mismatched shapes, ``reassign`` without complete SCB scores, or an
            assigned pair whose SCB score is missing.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be 2-D, got shape {similarity.shape}")
    if scb is not None:
        scb = np.asarray(scb, dtype=np.float64)
        if scb.shape != similarity.shape:
            raise ValueError(f"scb shape {scb.shape} differs from similarity shape "
                             f"{similarity.shape}")
    if reassign and (scb is None or np.isnan(scb).any()):
        raise ValueError("reassign needs SCB scores for every pair")
    assign_on = (similarity + scb) / 2 if reassign else similarity
    matches = hungarian_max(assign_on)
    decision = similarity if scb is None else scb
    scores = decision[matches[:, 0], matches[:, 1]]
    if np.isnan(scores).any():
        raise ValueError("an assigned pair has no SCB score; score the Hungarian pairs first")
    keep = scores >= threshold
    return matches[keep], scores[keep]
