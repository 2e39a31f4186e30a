r"""The ``geometry_fusion`` baseline: the matcher's position prior alone, as a two-term logistic
regression — the control that tells what learning from images adds.

Our matcher (:mod:`lngraph.models.asymmetric_matcher`, step 3) fuses learned appearance
similarities with two geometric terms. This baseline keeps only those two terms and learns
nothing else; where the full matcher does not beat it, its images add nothing.

For an earlier node :math:`i` (centre :math:`c_i`, radius :math:`r_i`) and a later node
:math:`j`:

1. **Features.**

   * aligned centre distance :math:`x^{d}_{ij} = \lVert c_i + u_i - c_j \rVert / g`, with
     :math:`u_i` the alignment shift of node :math:`i`
     (:func:`~lngraph.data.geometry.pair_shifts`: the robust rigid motion between the two node
     sets, refined per node with neighbourhood scale ``local_scale_mm``; the matcher's own
     settings :data:`ALIGNMENT`) and :math:`g` = ``gate_mm`` = 15 mm;
   * size change :math:`x^{s}_{ij} = \lvert \log r_i - \log r_j \rvert`, with :math:`r` the
     node radius (:attr:`~lngraph.io.cohort.NodeTable.radius_mm`: half the long axis where it
     is known, else half the short axis — as the pair graphs store it).

2. **Score.** :math:`P_{ij} = \sigma(w^\top x_{ij} + c)`, :math:`w \in \mathbb{R}^2`, fitted
   on every (earlier, later) node pair of the training patients' scan pairs with labels
   :math:`y_{ij} = 1` for a ground-truth match: class-balanced BCE
   (:func:`~lngraph.nn.losses.class_balanced_bce`: matched and unmatched pairs weigh half
   each) plus ``l2``\ :math:`\cdot\lVert w\rVert^2`, L-BFGS in float64
   (:func:`lngraph.nn.logistic.fit_balanced_logistic`, the fit of the matcher's own fusion
   calibration). Expected
   signs: both weights negative (far apart or resized means less likely the same node).

3. **Decision.** The rule every learned method shares
   (:func:`~lngraph.matching.batched.batched_assignment`): maximum-score Hungarian on
   :math:`P`, then pairs with :math:`P_{ij}` below a threshold :math:`\theta` are left
   unmatched (earlier node disappeared, later node new). :math:`\theta` is the value of
   :data:`THRESHOLDS` that maximises the selection score
   (:func:`~lngraph.metrics.selection_score`: pooled F1 + mean of the new and disappeared F1s,
   the number the matcher's own threshold is calibrated on) on held-out validation patients —
   ``val`` when given, else a ``val_fraction`` share of the training patients
   (:func:`lngraph.data.folds.holdout_split`, the split the learned matchers use), which
   are then left out of the logistic fit. Ties go to the middle of the best run of thresholds.

No image is read (``needs_images = False``) and no learned feature is used: three numbers are
fitted. Like the matcher's prior, it is invariant to translations of either scan (the
alignment shifts move with them) and, as far as the rigid alignment recovers them, to small
rotations of one scan.

**Shared frame** (``geometry_fusion_frame``, ``frame_scale_mm``): a third feature, the
distance of the raw centres :math:`\lVert c_i - c_j \rVert / f` before any alignment
(:math:`f` = ``frame_scale_mm``). It helps where the two scans' coordinates agree up to a few
centimetres (the same scanner frame, or DeepLesion's field-of-view corners), most of all for
scans with one or two nodes, which a translation-invariant method can only align onto each
other; it is then invariant only to translating both scans together. On scans in unrelated
frames it is misleading: use the plain method.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import expit

from lngraph.baselines.base import Method, register
from lngraph.data.folds import holdout_split
from lngraph.data.geometry import AlignmentParams, pair_shifts
from lngraph.io.cohort import Cohort, ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.matching.batched import BatchedMatches, apply_threshold, batched_assignment
from lngraph.metrics import pair_counts, selection_score, summarize
from lngraph.nn.logistic import fit_balanced_logistic

#: ``g`` (mm): the distance unit and the alignment's inlier scale, as in the matcher's config.
GATE_MM = 15.0
#: Alignment shifts as the matcher's ``lite`` config computes them.
ALIGNMENT = AlignmentParams(gate_mm=GATE_MM, local_scale_mm=30.0, rigid=True,
                            rotation_search=True)
#: Names of the two features, in the order of :attr:`GeometryFusion.weight`.
FEATURES = ("distance", "size")
#: Thresholds tried on the validation patients: 0.05, 0.10, …, 0.95.
THRESHOLDS = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2).tolist())
#: Smallest radius (mm) taken into a logarithm.
MIN_RADIUS_MM = 1e-3


def pair_features(pair: ScanPair, alignment: AlignmentParams = ALIGNMENT,
                  scale_mm: float = GATE_MM, frame_scale_mm: float | None = None) -> np.ndarray:
    """``[n_src, n_dst, k]`` float64 features of every node pair: aligned centre distance in
    units of ``scale_mm`` and absolute log-radius difference (module docstring); with
    ``frame_scale_mm`` also the raw centre distance in its units (``k`` = 3)."""
    src, dst = pair.src.nodes, pair.dst.nodes
    k = len(FEATURES) + (frame_scale_mm is not None)
    if len(src) == 0 or len(dst) == 0:
        return np.zeros((len(src), len(dst), k))
    aligned = src.pos + pair_shifts(src.pos, dst.pos, alignment)
    distance = np.linalg.norm(aligned[:, None] - dst.pos[None], axis=-1) / scale_mm
    log_src = np.log(np.maximum(src.radius_mm, MIN_RADIUS_MM))
    log_dst = np.log(np.maximum(dst.radius_mm, MIN_RADIUS_MM))
    size = np.abs(log_src[:, None] - log_dst[None])
    terms = [distance, size]
    if frame_scale_mm is not None:
        terms.append(np.linalg.norm(src.pos[:, None] - dst.pos[None], axis=-1) / frame_scale_mm)
    return np.stack(terms, axis=-1)


def pair_labels(pair: ScanPair) -> np.ndarray:
    """``[n_src, n_dst]`` float64, 1 where the two nodes share a ``track_id``."""
    y = np.zeros((len(pair.src.nodes), len(pair.dst.nodes)))
    gt = pair.gt_matches()
    y[gt[:, 0], gt[:, 1]] = 1.0
    return y


def _prediction(assigned: BatchedMatches) -> PairPrediction:
    matches, scores, n_src, n_dst = assigned.pairs()[0]
    return PairPrediction(n_src, n_dst, matches, scores)


@register
class GeometryFusion(Method):
    r"""Aligned distance and size change, fused by a class-balanced logistic regression, then
    thresholded Hungarian (see the module docstring). Reads no image.

    Args:
        gate_mm: :math:`g`, the distance unit and the alignment's inlier scale (mm).
        local_scale_mm: neighbourhood scale of the per-node alignment refinement (mm; 0: one
            translation for every node).
        rigid: start the alignment from the robust rigid motion (rotation included), as the
            matcher's ``lite`` config does; ``False``: from the translation.
        rotation_search: with ``rigid``, search starting rotations where the rigid
            refinement accepts no fit, as the matcher's ``model.position_search`` does.
        l2: ridge penalty on the weights (keeps them finite when the training pairs are
            separable).
        val_fraction: share of the training patients held out to choose the threshold when
            :meth:`fit` gets no ``val``.
        seed: seed of that split.
        frame_scale_mm: add the raw centre distance in these units as a third feature
            (module docstring, *Shared frame*); ``None``: the two features only.

    Attributes:
        weight: ``[k]`` fitted weights of :attr:`feature_names`, in feature units.
        bias: fitted bias :math:`c`.
        threshold: decision threshold on :math:`P` (chosen on validation; 0.5 until then, or
            when the validation patients cannot choose one).
        val_scores: ``{threshold: selection score}`` on the validation patients.
        val_patients: the patients the threshold was chosen on.
    """

    name = "geometry_fusion"
    needs_images = False
    learned = True
    seeded = True
    epochs_option = None

    def __init__(self, gate_mm: float = GATE_MM, local_scale_mm: float = 30.0,
                 l2: float = 1e-3, val_fraction: float = 0.2, seed: int = 0,
                 frame_scale_mm: float | None = None, rigid: bool = True,
                 rotation_search: bool = True):
        if not gate_mm > 0:
            raise ValueError(f"gate_mm must be positive, got {gate_mm}")
        if frame_scale_mm is not None and not frame_scale_mm > 0:
            raise ValueError(f"frame_scale_mm must be positive or None, got {frame_scale_mm}")
        self.frame_scale_mm = None if frame_scale_mm is None else float(frame_scale_mm)
        self.feature_names = FEATURES + (() if frame_scale_mm is None else ("frame distance",))
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.gate_mm = float(gate_mm)
        self.alignment = AlignmentParams(gate_mm=self.gate_mm,
                                         local_scale_mm=float(local_scale_mm), rigid=rigid,
                                         rotation_search=rotation_search)
        self.l2 = float(l2)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.weight: np.ndarray | None = None
        self.bias: float | None = None
        self.threshold = 0.5
        self.val_scores: dict[float, float] = {}
        self.val_patients: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(gate_mm={self.gate_mm:g}, "
                f"local_scale_mm={self.alignment.local_scale_mm:g}, l2={self.l2:g}, "
                f"val_fraction={self.val_fraction:g}, seed={self.seed}"
                + ("" if self.frame_scale_mm is None
                   else f", frame_scale_mm={self.frame_scale_mm:g}") + ")")

    def features(self, pair: ScanPair) -> np.ndarray:
        """``[n_src, n_dst, k]`` features of ``pair`` (:func:`pair_features`)."""
        return pair_features(pair, self.alignment, self.gate_mm, self.frame_scale_mm)

    def scores(self, pair: ScanPair) -> np.ndarray:
        """``[n_src, n_dst]`` matching probabilities :math:`P` of ``pair``."""
        if self.weight is None:
            raise RuntimeError("GeometryFusion needs fit() before predict()")
        return expit(self.features(pair) @ self.weight + self.bias)

    def fit(self, train: Cohort, val: Cohort | None = None) -> GeometryFusion:
        """Fit the weights on ``train`` and choose the threshold on ``val`` (or, without one,
        on a held-out ``val_fraction`` of the training patients, who are then not fitted on).

        Raises:
            ValueError: no training scan pair with ground truth and nodes on both sides, or
                only matched / only unmatched node pairs.
        """
        fit_cohort, select = train, val
        if val is None:
            fit_patients, val_patients = holdout_split(train.patients, self.val_fraction,
                                                          self.seed)
            if val_patients:
                fit_cohort, select = train.subset(fit_patients), train.subset(val_patients)
        pairs = [p for p in fit_cohort.pairs() if p.has_ground_truth
                 and len(p.src.nodes) and len(p.dst.nodes)]
        if not pairs:
            raise ValueError("geometry_fusion needs training scan pairs with ground truth "
                             "(track_id) and nodes in both scans")
        x = np.concatenate([self.features(p).reshape(-1, len(self.feature_names)) for p in pairs])
        y = np.concatenate([pair_labels(p).reshape(-1) for p in pairs])
        weight, self.bias = fit_balanced_logistic(x, y, l2=self.l2)
        self.weight = weight.numpy()
        self.threshold, self.val_scores = 0.5, {}
        self.val_patients = tuple(select.patients) if select is not None else ()
        if select is not None:
            self._select_threshold(select)
        return self

    def _select_threshold(self, cohort: Cohort) -> None:
        """Set :attr:`threshold` to the grid value with the best selection score on the
        scan pairs of ``cohort`` (module docstring); keep 0.5 when they have no matched node
        or no new / disappeared one (nothing to trade)."""
        pairs = [p for p in cohort.pairs() if p.has_ground_truth]
        matched = sum(len(p.gt_matches()) for p in pairs)
        unmatched = sum(len(p.gt_new()) + len(p.gt_disappeared()) for p in pairs)
        if matched == 0 or unmatched == 0:
            return
        assigned = [self._assign(p, threshold=None) for p in pairs]

        def score(threshold: float) -> float:
            counts = [pair_counts(p, _prediction(apply_threshold(a, threshold)))
                      for p, a in zip(pairs, assigned, strict=True)]
            return selection_score(summarize(counts))

        self.val_scores = {t: score(t) for t in THRESHOLDS}
        values = np.array(list(self.val_scores.values()))
        best = np.flatnonzero(values >= values.max() - 1e-12)
        self.threshold = float(THRESHOLDS[best[len(best) // 2]])

    def _assign(self, pair: ScanPair, threshold: float | None) -> BatchedMatches:
        return batched_assignment(torch.as_tensor(self.scores(pair)), threshold=threshold)

    def predict(self, pair: ScanPair) -> PairPrediction:
        if self.weight is None:
            raise RuntimeError("GeometryFusion needs fit() before predict()")
        if len(pair.src.nodes) == 0 or len(pair.dst.nodes) == 0:
            return PairPrediction(len(pair.src.nodes), len(pair.dst.nodes))
        return _prediction(self._assign(pair, self.threshold))


@register
class GeometryFusionFrame(GeometryFusion):
    """:class:`GeometryFusion` with the raw centre distance as a third feature (module
    docstring, *Shared frame*; ``frame_scale_mm`` = 100 by default): for scans whose
    coordinates agree up to a few centimetres."""

    name = "geometry_fusion_frame"

    def __init__(self, *args, frame_scale_mm: float | None = 100.0, **kwargs):
        super().__init__(*args, frame_scale_mm=frame_scale_mm, **kwargs)


__all__ = ["ALIGNMENT", "FEATURES", "GATE_MM", "THRESHOLDS", "GeometryFusion",
           "GeometryFusionFrame",
           "fit_balanced_logistic", "pair_features", "pair_labels"]
