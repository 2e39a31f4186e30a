r"""How far a method's match scores are from probabilities, and the temperature that brings them
closer (docs/method.md, *Calibrated confidence*).

**Events.** The scored events are *match events*: every match :math:`(i, j)` of a
:class:`~lngraph.io.matches.PairPrediction` whose score :math:`c` is finite and whose two nodes
have a known ``track_id``; its label is :math:`y = 1` when the ground truth matches :math:`i`
and :math:`j` (the same ``track_id``), else 0 (:func:`match_events`). On a model's prediction
at threshold 0 — every pair the Hungarian step assigns, kept or not — there is one event per
earlier node that has an assigned partner :math:`a(i)`, and :math:`c_i` claims
:math:`\Pr[a(i) \text{ is } i\text{'s true partner}]`; :math:`1 - c_i` is then the probability
that :math:`i` has disappeared or was assigned the wrong node. These *assigned-pair* events are
what temperature scaling is fitted on and what ``lngraph evaluate --model`` reports first; the
kept matches of a ``matches.csv`` are the subset with :math:`c \ge` the decision threshold.

**Expected calibration error** (Guo et al., ICML 2017) with :math:`B` = :data:`N_BINS`
equal-width bins :math:`I_1 = [0, \tfrac1B]`, :math:`I_b = (\tfrac{b-1}{B}, \tfrac bB]`:

.. math::
    \mathrm{ECE} = \sum_{b=1}^{B} \frac{|S_b|}{n}\,\bigl|\mathrm{acc}(S_b) -
        \mathrm{conf}(S_b)\bigr|, \qquad S_b = \{k : c_k \in I_b\},

with :math:`\mathrm{acc}(S_b)` the mean label and :math:`\mathrm{conf}(S_b)` the mean score of
the bin's events and :math:`n` the number of events (NaN when :math:`n = 0`). The reliability
curve (:func:`reliability_curve`) is the per-bin :math:`(\mathrm{conf}, \mathrm{acc}, |S_b|)`.

**Temperature scaling** of a score :math:`p \in [0, 1]` is the monotone map

.. math::
    f_{T,b}(p) = \sigma\bigl(\operatorname{logit}(p) / T + b\bigr), \qquad
    (\hat T, \hat b) = \arg\min_{T > 0,\, b} -\sum_k \bigl[y_k \log f_{T,b}(p_k)
        + (1 - y_k)\log(1 - f_{T,b}(p_k))\bigr],

fitted on validation events: :func:`fit_temperature` is the classic one-parameter fit with
:math:`b = 0` (a bounded 1-D search on :math:`\log T`), :func:`fit_scaling` fits both (Platt
scaling of the logit; the NLL is convex in :math:`(1/T, b)`, minimised by L-BFGS-B).
:math:`T > 1` softens over-confident scores, :math:`T < 1` sharpens under-confident ones;
:math:`b` moves every score's logit by the same amount — what a score needs whose errors lie on
one side of 0.5 (the graph matcher's :math:`P_{ij}`, a product of two softmaxes and two
matchabilities, is far below the rate at which its assigned pairs are right; a temperature alone
keeps :math:`p = 0.5` fixed and cannot lift 0.1 towards 0.9). :math:`p` is clipped to
:math:`[\epsilon, 1 - \epsilon]` (:data:`EPS`) before the logit. Being strictly increasing,
:math:`f_{T,b}` keeps the order of the scores, so a decision :math:`p \ge \theta` is the
decision :math:`f_{T,b}(p) \ge f_{T,b}(\theta)`.

Numpy and SciPy only; imports no model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lngraph.io.cohort import ScanPair
from lngraph.io.matches import PairPrediction

#: Equal-width bins of the expected calibration error and the reliability curve.
N_BINS = 15
#: Scores are clipped to [EPS, 1 - EPS] before the logit of temperature scaling.
EPS = 1e-7
#: Range searched for the temperature.
TEMPERATURE_BOUNDS = (0.01, 100.0)
#: Largest bias :func:`fit_scaling` fits.
MAX_BIAS = 50.0


def _events(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64).reshape(-1)
    y = np.asarray(correct, dtype=np.float64).reshape(-1)
    if c.shape != y.shape:
        raise ValueError(f"{len(c)} confidences but {len(y)} labels")
    if len(c) and (not np.isfinite(c).all() or c.min() < 0 or c.max() > 1):
        raise ValueError("confidences must be finite and in [0, 1]")
    if len(y) and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return c, y


def bin_index(confidence: np.ndarray, bins: int = N_BINS) -> np.ndarray:
    """The 0-based bin of each confidence: :math:`\\lceil cB \\rceil - 1`, with 0 in the
    first bin (module docstring)."""
    return np.clip(np.ceil(np.asarray(confidence, np.float64) * bins).astype(np.int64) - 1,
                   0, bins - 1)


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per equal-width bin of the confidence: mean confidence, accuracy (mean label) and
    event count; ``confidence`` and ``accuracy`` are NaN in empty bins.

    Args:
        edges: ``[B + 1]`` bin edges, 0 … 1.
        confidence, accuracy: ``[B]``.
        count: ``[B]`` int.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def n(self) -> int:
        """Number of events."""
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """The expected calibration error of the events (NaN without events)."""
        if not self.n:
            return math.nan
        full = self.count > 0
        gap = np.abs(self.accuracy[full] - self.confidence[full])
        return float((self.count[full] * gap).sum() / self.n)

    def to_dict(self) -> dict:
        """Plain lists (JSON and checkpoint safe; NaN for empty bins)."""
        return {"edges": self.edges.tolist(), "confidence": self.confidence.tolist(),
                "accuracy": self.accuracy.tolist(), "count": self.count.tolist()}


def reliability_curve(confidence, correct, bins: int = N_BINS) -> ReliabilityCurve:
    """The reliability curve of events with scores ``confidence`` in [0, 1] and 0/1 labels
    ``correct``.

    Raises:
        ValueError: sizes differ, a confidence is outside [0, 1] or not finite, a label is not
            0 or 1, or ``bins`` < 1.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    c, y = _events(confidence, correct)
    index = bin_index(c, bins)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, weights=c, minlength=bins) / count
        acc = np.bincount(index, weights=y, minlength=bins) / count
    return ReliabilityCurve(np.linspace(0.0, 1.0, bins + 1), conf, acc, count.astype(np.int64))


def expected_calibration_error(confidence, correct, bins: int = N_BINS) -> float:
    """ECE (module docstring) of the events; NaN without events.

    Raises:
        ValueError: as :func:`reliability_curve`.
    """
    return reliability_curve(confidence, correct, bins).ece


def match_events(items: Iterable[tuple[ScanPair, PairPrediction]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(scores [n], labels [n])`` of the match events (module docstring) of predictions,
    pooled over pairs: each predicted match with a finite score between two nodes of known
    ``track_id``; label 1 when they share it. Scores are clipped to [0, 1] (a method's score
    outside it is not a probability; clipping is what a reader of it would do).

    Raises:
        ValueError: a prediction sized for another pair.
    """
    scores, labels = [], []
    for pair, pred in items:
        if (pred.n_src, pred.n_dst) != (len(pair.src.nodes), len(pair.dst.nodes)):
            raise ValueError(f"prediction is for {pred.n_src} x {pred.n_dst} nodes but pair "
                             f"{pair.src.scan_id} -> {pair.dst.scan_id} has "
                             f"{len(pair.src.nodes)} x {len(pair.dst.nodes)}")
        src_tracks, dst_tracks = pair.src.nodes.track_id, pair.dst.nodes.track_id
        for (i, j), score in zip(pred.matches.tolist(), pred.scores.tolist(), strict=True):
            a, b = src_tracks[i], dst_tracks[j]
            if a is None or b is None or not math.isfinite(score):
                continue
            scores.append(min(max(score, 0.0), 1.0))
            labels.append(float(a == b))
    return np.asarray(scores, np.float64), np.asarray(labels, np.float64)


def logit(p) -> np.ndarray:
    """:math:`\\log(p / (1 - p))` of ``p`` clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def check_scaling(temperature: float, bias: float = 0.0) -> None:
    """Raise ``ValueError`` unless ``temperature`` is positive and finite and ``bias``
    finite."""
    for name, value in (("temperature", temperature), ("bias", bias)):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number) \
                or not math.isfinite(value):
            raise ValueError(f"the {name} must be a finite number, got {value!r}")
    if temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature!r}")


def temperature_scale(p, temperature: float, bias: float = 0.0) -> np.ndarray:
    """:math:`f_{T,b}(p) = \\sigma(\\operatorname{logit}(p) / T + b)` (module docstring);
    ``p`` itself (as float64) when :math:`T = 1, b = 0`.

    Raises:
        ValueError: a temperature that is not positive and finite, or a bias not finite.
    """
    check_scaling(temperature, bias)
    p = np.asarray(p, np.float64)
    if temperature == 1.0 and bias == 0.0:
        return p.copy()
    z = logit(p) / temperature + bias
    return np.exp(-np.logaddexp(0.0, -z))


def scaling_nll(scores, labels, temperature: float, bias: float = 0.0) -> float:
    """Mean negative log-likelihood of 0/1 ``labels`` under :math:`f_{T,b}` of ``scores``."""
    z = logit(scores) / temperature + bias
    y = np.asarray(labels, np.float64)
    return float(np.mean(y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z)))


def _fit_data(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    c, y = _events(scores, labels)
    if not len(c):
        raise ValueError("score calibration needs match events, got none")
    positives = int(y.sum())
    if positives in (0, len(y)):
        kind = "correct" if positives else "wrong"
        raise ValueError(f"score calibration needs correct and wrong matches, but all "
                         f"{len(y)} are {kind}")
    z = logit(c)
    if not np.any(np.abs(z) > 1e-12):
        raise ValueError("every score is 0.5: there is nothing to scale")
    return z, y


def fit_temperature(scores, labels, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature :math:`\\hat T` (with :math:`b = 0`) minimising the NLL of the events
    (module docstring), searched over ``bounds`` (log scale, bounded Brent).

    Raises:
        ValueError: no events, labels of one class only (the NLL then falls without end as
            the scores sharpen or flatten: no temperature is best), scores that carry no
            information (all 0.5), or invalid scores or labels.
    """
    from scipy.optimize import minimize_scalar  # (here: importing the metrics stays light)

    z, y = _fit_data(scores, labels)

    def nll(log_t: float) -> float:
        u = z / math.exp(log_t)
        return float(np.mean(y * np.logaddexp(0.0, -u) + (1 - y) * np.logaddexp(0.0, u)))

    lo, hi = (math.log(b) for b in bounds)
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def fit_scaling(scores, labels, *, bias: bool = True,
                bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> tuple[float, float]:
    """``(T, b)`` minimising the NLL of :math:`f_{T,b}` on the events (module docstring);
    ``bias=False`` is :func:`fit_temperature` (``b = 0``). :math:`T` stays within ``bounds``
    and :math:`|b| \\le` :data:`MAX_BIAS` (separable events would push them to infinity).

    Raises:
        ValueError: as :func:`fit_temperature`.
    """
    from scipy.optimize import minimize

    if not bias:
        return fit_temperature(scores, labels, bounds), 0.0
    z, y = _fit_data(scores, labels)

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        u = w[0] * z + w[1]
        value = np.mean(y * np.logaddexp(0.0, -u) + (1 - y) * np.logaddexp(0.0, u))
        residual = np.exp(-np.logaddexp(0.0, -u)) - y          # sigma(u) - y
        return float(value), np.array([np.mean(residual * z), np.mean(residual)])

    result = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                      bounds=[(1 / bounds[1], 1 / bounds[0]), (-MAX_BIAS, MAX_BIAS)])
    inverse, b = (float(v) for v in result.x)
    return 1.0 / inverse, b


def calibration_summary(scores, labels, temperature: float = 1.0, bias: float = 0.0,
                        bins: int = N_BINS) -> dict:
    """The ECE of events before and after :math:`f_{T,b}`, with both reliability curves:
    ``{"n", "n_correct", "temperature", "bias", "ece_raw", "ece", "nll_raw", "nll",
    "reliability_raw", "reliability"}`` (``ece``, ``nll``, ``reliability`` of the scaled scores;
    NaN without events).

    Raises:
        ValueError: as :func:`reliability_curve`, or as :func:`check_scaling`.
    """
    c, y = _events(scores, labels)
    scaled = temperature_scale(c, temperature, bias)
    raw_curve, curve = reliability_curve(c, y, bins), reliability_curve(scaled, y, bins)
    return {
        "n": len(c), "n_correct": int(y.sum()), "temperature": float(temperature),
        "bias": float(bias), "ece_raw": raw_curve.ece, "ece": curve.ece,
        "nll_raw": scaling_nll(c, y, 1.0) if len(c) else math.nan,
        "nll": scaling_nll(c, y, temperature, bias) if len(c) else math.nan,
        "reliability_raw": raw_curve.to_dict(), "reliability": curve.to_dict(),
    }
