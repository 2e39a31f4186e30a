"""Patient-level cross-validation splits.

Every scan of a patient lands in the same split, so no pair of a test patient is ever seen in
training or validation. :func:`patient_folds` shuffles the patients once with ``seed`` and cuts
them into ``folds`` nearly equal test folds; for each fold, :func:`holdout_split` carves the
validation patients out of the remaining (training) patients. Everything is deterministic in
``(patients as a set, folds, seed, val_fraction)``: the input order does not matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FoldSplit:
    """The patients of one fold, each tuple sorted.

    Args:
        train: patients to fit on.
        val: patients to select on (early stopping, checkpoint choice).
        test: held-out patients to report on.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def _unique_sorted(patients: Iterable[str]) -> list[str]:
    out = sorted({str(p) for p in patients})
    if not out:
        raise ValueError("no patients to split")
    return out


def holdout_split(patients: Iterable[str], val_fraction: float = 0.2, seed: int = 0
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split patients into ``(train, val)``, both sorted.

    ``round(val_fraction * n)`` patients go to validation, at least one when
    ``val_fraction > 0`` and at least two patients exist (so a fold always has something to
    select on), and never all of them.

    Raises:
        ValueError: no patients or ``val_fraction`` outside ``[0, 1)``.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = _unique_sorted(patients)
    n_val = int(round(val_fraction * len(ordered)))
    if val_fraction > 0 and len(ordered) >= 2:
        n_val = min(max(n_val, 1), len(ordered) - 1)
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    return tuple(sorted(shuffled[n_val:])), tuple(sorted(shuffled[:n_val]))


def patient_folds(patients: Iterable[str], folds: int = 5, seed: int = 0,
                  val_fraction: float = 0.2) -> list[FoldSplit]:
    """Patient-level ``folds``-fold cross-validation with a validation split per fold.

    The test folds partition the patients (sizes differ by at most one); each fold's
    validation patients are :func:`holdout_split` of its training patients (seeded by
    ``(seed, fold)``).

    Raises:
        ValueError: ``folds < 2``, more folds than patients, or a bad ``val_fraction``.
    """
    ordered = _unique_sorted(patients)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if folds > len(ordered):
        raise ValueError(f"{folds} folds need at least {folds} patients, got {len(ordered)}")
    shuffled = np.array(ordered, dtype=object)[np.random.default_rng(seed).permutation(
        len(ordered))]
    splits = []
    for k, test in enumerate(np.array_split(shuffled, folds)):
        rest = sorted(set(ordered) - set(test.tolist()))
        train, val = holdout_split(rest, val_fraction, seed=_fold_seed(seed, k))
        splits.append(FoldSplit(train, val, tuple(sorted(test.tolist()))))
    return splits


def _fold_seed(seed: int, fold: int) -> int:
    """A per-fold seed derived from ``(seed, fold)`` (numpy ``SeedSequence``)."""
    return int(np.random.SeedSequence([int(seed), int(fold)]).generate_state(1)[0])
