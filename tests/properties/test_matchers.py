"""Property-based tests (Hypothesis) of every matching method on random node sets.

Each method is run on random scan pairs of 0–12 nodes per scan (a random share of the earlier
nodes reappears in the later scan, moved by one translation plus per-node jitter, among new
nodes at random places; rows are shuffled) and must

* return a one-to-one matching with indices in range and finite scores;
* give every earlier node exactly one status (matched or disappeared) and every later node
  exactly one (matched or new), also as ``matches.csv`` rows (:func:`prediction_frame`);
* be deterministic (the same pair twice gives the same output);
* be equivariant to the row order of either scan (the matched node-id pairs are the same);
* where the method claims it, be invariant to a translation of either scan (|t| ≤ 100 mm).

Methods: ``nearest``, ``pointset`` (rigid and affine CPD), a fitted ``lgm`` (a few epochs on a
tiny geometry-only synthetic cohort), lngraph's matchers in geometry-only mode (untrained,
seeded; lite preset, so with the position prior and per-node local shifts): ``matcher`` the
graph matcher (the lite default; every assigned pair kept), ``asymmetric`` the asymmetric
matcher; and the image
methods on a tiny smooth random CT: ``registration`` (a cut-down affine registration) and the
three lesion trackers (two training steps, small cubes). The image methods are not tested for
translation invariance: none claims it, and translating a scan means moving its image too.

``LNGRAPH_PROPERTY_EXAMPLES=N`` runs N random examples per property (a fresh random search)
instead of the default fixed (derandomized) set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from lngraph.baselines import LGM, DLTLite, ImageRegistration, Nearest, PointSet, SAMLite, TLTLite
from lngraph.baselines.registration import RegistrationParams
from lngraph.io.cohort import Cohort, NodeTable, Scan, ScanPair, read_cohort
from lngraph.io.matches import PairPrediction, prediction_frame
from lngraph.models import build_matcher, predict_pairs, preset
from lngraph.synth import generate_cohort

MAX_NODES = 12
_EXAMPLES = os.environ.get("LNGRAPH_PROPERTY_EXAMPLES")


def _settings(name: str, examples: int = 25, image_examples: int = 12) -> settings:
    """Hypothesis settings for method ``name``: a fixed (derandomized) set of ``examples``
    (``image_examples`` for the slower image methods), or the environment's number of fresh
    random ones; no example database (nothing is written into the checkout)."""
    n = image_examples if name in IMAGE else examples
    return settings(max_examples=int(_EXAMPLES) if _EXAMPLES else n, deadline=None,
                    derandomize=_EXAMPLES is None, database=None, print_blob=True)


GEOMETRIC = ["nearest", "pointset", "pointset_affine", "lgm", "matcher", "asymmetric"]
IMAGE = ["registration", "dlt_lite", "sam_lite", "tlt_lite"]
ALL = GEOMETRIC + IMAGE
#: The methods whose documentation claims invariance to translations of either scan:
#: nearest and the matchers' position prior (robust translation; lngraph.matching.alignment,
#: lngraph.models.asymmetric_matcher step 3, lngraph.models.graph_matcher step 2: positions
#: enter only as offsets after the alignment); pointset registers by a rigid/affine map with
#: its own translation; lgm's features are rigid-invariant and its motion cue is the distance
#: after a rigid CPD alignment (lngraph.baselines.lgm, steps 1 and 4).
TRANSLATION_INVARIANT = GEOMETRIC
#: Float32 methods (the matcher's graphs hold float32 positions) compare scores more loosely.
SCORE_TOL = {"matcher": 1e-4, "asymmetric": 1e-4}
DEFAULT_SCORE_TOL = 1e-6

#: The tiny CT of the image methods: 32³ voxels of 10 mm around the origin (±160 mm), which
#: holds every node the strategy draws (|coordinate| ≤ 80 + 30 + 10 for reappearing nodes,
#: ≤ 100 for new ones).
CT_SIZE, CT_SPACING = 32, 10.0
CT_ORIGIN = -(CT_SIZE - 1) / 2 * CT_SPACING
#: Motion of the later image (its origin) against the earlier one, mm.
CT_MOTION = (7.0, -5.0, 4.0)


# --- random scan pairs ------------------------------------------------------------------------

class PairSpec(NamedTuple):
    """The few numbers a random scan pair is made from (what Hypothesis prints and shrinks).

    ``n_src`` earlier nodes uniform in ±80 mm; ``n_kept`` of them (a random subset) reappear
    in the later scan, moved by one translation uniform in ±30 mm per axis plus Gaussian
    jitter of ``jitter_mm`` per axis (clipped at ±10 mm), their diameters scaled by up to
    ±50 %; ``n_new`` later nodes are uniform in ±100 mm; the later rows are shuffled.
    """

    n_src: int
    n_kept: int
    n_new: int
    jitter_mm: float
    seed: int

    def pair(self, image_dir=None) -> ScanPair:
        rng = np.random.default_rng(self.seed)
        pos = rng.uniform(-80, 80, (self.n_src, 3))
        short = rng.uniform(5, 20, self.n_src)
        long_ = short * rng.uniform(1.0, 1.8, self.n_src)
        tracks = np.array([f"t{k}" for k in range(self.n_src)], object)
        kept = np.sort(rng.permutation(self.n_src)[:self.n_kept])
        moved = (pos[kept] + rng.uniform(-30, 30, 3)
                 + np.clip(rng.normal(0, self.jitter_mm, (self.n_kept, 3)), -10, 10))
        growth = np.exp(rng.uniform(-0.4, 0.4, self.n_kept))
        new_short = rng.uniform(5, 20, self.n_new)
        later = NodeTable.from_arrays(
            np.concatenate([moved, rng.uniform(-100, 100, (self.n_new, 3))]),
            np.concatenate([short[kept] * growth, new_short]),
            np.concatenate([long_[kept] * growth, new_short * rng.uniform(1, 1.8, self.n_new)]),
            node_id=[f"b{k}" for k in range(self.n_kept + self.n_new)],
            track_id=np.concatenate([tracks[kept], [f"new{k}" for k in range(self.n_new)]]))
        earlier = NodeTable.from_arrays(pos, short, long_,
                                        node_id=[f"a{k}" for k in range(self.n_src)],
                                        track_id=tracks)
        images = (None, None) if image_dir is None else (image_dir / "t0.mha",
                                                         image_dir / "t1.mha")
        return ScanPair(Scan("p", "t0", "0", images[0], earlier),
                        Scan("p", "t1", "1", images[1], later.take(rng.permutation(len(later)))))


@st.composite
def pair_specs(draw, max_nodes: int = MAX_NODES) -> PairSpec:
    n_src = draw(st.integers(0, max_nodes), label="n_src")
    n_kept = draw(st.integers(0, n_src), label="n_kept")
    n_new = draw(st.integers(0, max_nodes - n_kept), label="n_new")
    jitter = draw(st.sampled_from([0.0, 1.0, 4.0, 8.0]), label="jitter_mm")
    seed = draw(st.integers(0, 2 ** 32 - 1), label="seed")
    return PairSpec(n_src, n_kept, n_new, jitter, seed)


@st.composite
def reordered_specs(draw) -> tuple[PairSpec, tuple[int, ...], tuple[int, ...]]:
    """A pair spec and a new row order of each of its scans."""
    spec = draw(pair_specs())
    src_order = draw(st.permutations(range(spec.n_src)), label="src order")
    dst_order = draw(st.permutations(range(spec.n_kept + spec.n_new)), label="dst order")
    return spec, tuple(src_order), tuple(dst_order)


def translations(max_mm: float = 100.0):
    """Vectors of length at most ``max_mm`` (a cube of side 2 × max_mm shrunk onto the ball)."""
    coordinate = st.floats(-max_mm, max_mm, allow_nan=False, allow_infinity=False)

    def onto_ball(t):
        t = np.asarray(t, dtype=np.float64)
        norm = np.linalg.norm(t)
        return t if norm <= max_mm else t * (max_mm / norm)
    return st.tuples(coordinate, coordinate, coordinate).map(onto_ball)


def reorder(pair: ScanPair, src_order, dst_order) -> ScanPair:
    """``pair`` with the rows of each node table taken in the given order."""
    src, dst = pair.src, pair.dst
    return ScanPair(Scan(src.patient_id, src.scan_id, src.timepoint, src.image,
                         src.nodes.take(np.asarray(src_order, dtype=np.int64))),
                    Scan(dst.patient_id, dst.scan_id, dst.timepoint, dst.image,
                         dst.nodes.take(np.asarray(dst_order, dtype=np.int64))))


def translate(scan: Scan, t) -> Scan:
    """``scan`` with every node centre moved by ``t`` (mm)."""
    n = scan.nodes
    return Scan(scan.patient_id, scan.scan_id, scan.timepoint, scan.image,
                NodeTable(n.node_id, n.pos + np.asarray(t), n.short_axis_mm, n.long_axis_mm,
                          n.track_id))


def matched(pair: ScanPair, pred: PairPrediction) -> dict[tuple[str, str], float]:
    """The prediction as ``{(src node id, dst node id): score}``."""
    src, dst = pair.src.nodes.node_id, pair.dst.nodes.node_id
    return {(str(src[i]), str(dst[j])): float(s)
            for (i, j), s in zip(pred.matches.tolist(), pred.scores.tolist(), strict=True)}


def assert_same_matching(name: str, expected: dict, actual: dict, what: str) -> None:
    assert actual.keys() == expected.keys(), (
        f"{name}: {what} changed the matched node pairs: lost "
        f"{sorted(expected.keys() - actual.keys())}, gained "
        f"{sorted(actual.keys() - expected.keys())}")
    tol = SCORE_TOL.get(name, DEFAULT_SCORE_TOL)
    for key, score in expected.items():
        assert actual[key] == pytest.approx(score, abs=tol), f"{name}: score of {key} ({what})"


# --- the methods ------------------------------------------------------------------------------

def _write_ct(folder) -> None:
    """A smooth random CT (±300 HU blobs plus a little noise) as the earlier image, and the
    same anatomy moved by :data:`CT_MOTION` as the later one."""
    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.normal(size=(CT_SIZE,) * 3), 2.0)
    hu = 300 * smooth / np.abs(smooth).max() + rng.normal(0, 10, smooth.shape)
    for name, origin in (("t0", np.zeros(3)), ("t1", np.asarray(CT_MOTION))):
        image = sitk.GetImageFromArray(hu.astype(np.float32))
        image.SetSpacing((CT_SPACING,) * 3)
        image.SetOrigin(tuple(CT_ORIGIN + origin))
        sitk.WriteImage(image, str(folder / f"{name}.mha"))


#: A registration small enough for a property test (one level, few iterations, no B-spline).
#: ``seed=1``, the default (SimpleITK reads 0 as ``sitkWallClock``, so 0 is refused; see
#: test_registration_with_default_seed_is_repeatable).
TINY_REGISTRATION = dict(working_spacing_mm=CT_SPACING, samples=2000, shrink=(1,),
                         smooth_mm=(0.0,), affine_iterations=10, bspline_mesh=0, threads=1)
TINY_TRACKER = dict(template_size=9, search_size=17, steps=2, batch_size=2,
                    soft_tissue_points=16, seed=0)


class Methods:
    """Every method's ``predict`` by name, built (and fitted) on first use."""

    def __init__(self, folder):
        self.folder = folder
        self._cache: dict[str, Callable[[ScanPair], PairPrediction]] = {}

    def needs_images(self, name: str) -> bool:
        return name in IMAGE

    def __getitem__(self, name: str) -> Callable[[ScanPair], PairPrediction]:
        if name not in self._cache:
            self._cache[name] = getattr(self, "_" + name)()
        return self._cache[name]

    def _nearest(self):
        return Nearest().predict

    def _pointset(self):
        return PointSet().predict

    def _pointset_affine(self):
        return PointSet(transform="affine").predict

    def _lgm(self):
        """LGM fitted for 3 epochs on a 4-patient geometry-only synthetic cohort (3 train,
        1 validation), as in tests/baselines/test_lgm.py but from lngraph.synth."""
        cohort = read_cohort(generate_cohort(self.folder / "cohort", 4, seed=0, images=False,
                                             progress=False))
        patients = cohort.patients
        method = LGM(epochs=3, qp_iterations=60, seed=0).fit(cohort.subset(patients[:3]),
                                                            cohort.subset(patients[3:]))
        return method.predict

    def _matcher(self, architecture: str = "graph"):
        torch.manual_seed(0)
        model = build_matcher(preset("lite").with_values(
            {"model.geometry_only": True, "model.architecture": architecture}))
        model.eval()
        # the untrained graph matcher's assignment probabilities are all below the lite
        # threshold: threshold 0 keeps every assigned pair, so that the properties see its
        # assignment rather than an empty matching
        threshold = 0.0 if architecture == "graph" else None
        return lambda pair: predict_pairs(model, [pair], threshold=threshold)[0]

    def _asymmetric(self):
        return self._matcher("asymmetric")

    def _images(self) -> Scan:
        if not (self.folder / "t0.mha").is_file():
            _write_ct(self.folder)
        return Scan("q", "ct", "0", self.folder / "t0.mha", NodeTable.empty())

    def _registration(self):
        self._images()
        return ImageRegistration(params=RegistrationParams(**TINY_REGISTRATION, seed=1)).predict

    def _tracker(self, cls):
        training = Cohort([self._images()])
        return cls(**TINY_TRACKER).fit(training).predict

    def _dlt_lite(self):
        return self._tracker(DLTLite)

    def _sam_lite(self):
        return self._tracker(SAMLite)

    def _tlt_lite(self):
        return self._tracker(TLTLite)


@pytest.fixture(scope="module")
def methods(tmp_path_factory):
    torch.set_num_threads(1)
    return Methods(tmp_path_factory.mktemp("property_methods"))


def _pair(methods: Methods, name: str, spec: PairSpec) -> ScanPair:
    return spec.pair(methods.folder if methods.needs_images(name) else None)


def _run(methods: Methods, name: str, pair: ScanPair) -> PairPrediction:
    pred = methods[name](pair)
    assert isinstance(pred, PairPrediction)
    return pred


# --- the properties ---------------------------------------------------------------------------
# Each test runs one Hypothesis search per method (an inner @given function, so that the slower
# image methods get fewer examples).
#
# Counterexamples found by the search, kept as explicit examples. Symmetric node sets of 1×2,
# 2×1 and 2×2 nodes: the robust translation (lngraph.matching.alignment) scores the candidate
# shifts that put either earlier node on either later node equally, and they lie equally far
# from the centroid shift, its tie-break; the first in row order (or the one rounding favours)
# wins, so reordering or translating a scan changes the matching of nearest, of the matcher's
# position prior and of the trackers' search centres.
TIE_1X2 = (PairSpec(n_src=1, n_kept=0, n_new=2, jitter_mm=0.0, seed=1), (0,), (1, 0))
TIE_1X2_KEPT = (PairSpec(n_src=1, n_kept=1, n_new=1, jitter_mm=0.0, seed=0), (0,), (1, 0))
TIE_2X1 = (PairSpec(n_src=2, n_kept=1, n_new=0, jitter_mm=0.0, seed=0), (1, 0), (0,))
TIE_2X2 = (PairSpec(n_src=2, n_kept=0, n_new=2, jitter_mm=0.0, seed=0), (1, 0), (1, 0))
#: (spec, t) where translating one scan flips that tie (nearest: dst by t, src by t; matcher:
#: src by t).
TIE_TRANSLATIONS = [
    (PairSpec(n_src=1, n_kept=0, n_new=2, jitter_mm=0.0, seed=10), (0.0, 1.0, 0.0)),
    (PairSpec(n_src=1, n_kept=1, n_new=1, jitter_mm=0.0, seed=617), (0.0, 0.0, 6.0)),
    (PairSpec(n_src=1, n_kept=0, n_new=2, jitter_mm=0.0, seed=733733), (-3.0, 0.0, 0.0)),
]


def _with_examples(values, key):
    """Decorator adding ``@example(**{key: v})`` for every ``v`` in ``values``."""
    def decorate(fn):
        for value in values:
            fn = example(**{key: value})(fn)
        return fn
    return decorate


@pytest.mark.parametrize("name", ALL)
def test_one_to_one_in_range_with_finite_scores(methods, name):
    @_settings(name)
    @given(spec=pair_specs())
    def check(spec):
        pair = _pair(methods, name, spec)
        pred = _run(methods, name, pair)
        n_src, n_dst = len(pair.src.nodes), len(pair.dst.nodes)
        assert (pred.n_src, pred.n_dst) == (n_src, n_dst)
        m = pred.matches
        assert m.dtype == np.int64 and m.shape == (len(m), 2) and len(m) <= min(n_src, n_dst)
        assert ((m[:, 0] >= 0) & (m[:, 0] < n_src)).all()
        assert ((m[:, 1] >= 0) & (m[:, 1] < n_dst)).all()
        assert len(set(m[:, 0].tolist())) == len(m) and len(set(m[:, 1].tolist())) == len(m)
        assert pred.scores.shape == (len(m),) and np.isfinite(pred.scores).all()
        if pred.points is not None:
            assert pred.points.shape == (n_src, 3)
    check()


@pytest.mark.parametrize("name", ALL)
def test_every_node_has_exactly_one_status(methods, name):
    @_settings(name)
    @given(spec=pair_specs())
    def check(spec):
        pair = _pair(methods, name, spec)
        pred = _run(methods, name, pair)
        n_src, n_dst = len(pair.src.nodes), len(pair.dst.nodes)
        src_status = np.concatenate([pred.matches[:, 0], pred.disappeared])
        dst_status = np.concatenate([pred.matches[:, 1], pred.new])
        assert sorted(src_status.tolist()) == list(range(n_src))
        assert sorted(dst_status.tolist()) == list(range(n_dst))
        assert (pred.partner_of_src() >= 0).sum() == len(pred.matches)
        rows = prediction_frame(pair, pred)
        src_rows, dst_rows = rows[rows.src_node != ""], rows[rows.dst_node != ""]
        assert sorted(src_rows.src_node) == sorted(map(str, pair.src.nodes.node_id))
        assert sorted(dst_rows.dst_node) == sorted(map(str, pair.dst.nodes.node_id))
        assert set(src_rows.status) <= {"matched", "disappeared"}
        assert set(dst_rows.status) <= {"matched", "new"}
        assert (rows.status == "matched").sum() == len(pred.matches)
        assert len(rows) == n_src + n_dst - len(pred.matches)
    check()


@pytest.mark.parametrize("name", ALL)
def test_predict_is_deterministic(methods, name):
    """The same pair twice: the same matches, and scores and points equal up to rounding
    (SimpleITK's registration differs in the last bit from call to call even with a fixed
    seed and one thread)."""
    @_settings(name, examples=10, image_examples=6)
    @given(spec=pair_specs())
    def check(spec):
        pair = _pair(methods, name, spec)
        first, second = _run(methods, name, pair), _run(methods, name, pair)
        np.testing.assert_array_equal(first.matches, second.matches)
        np.testing.assert_allclose(first.scores, second.scores, rtol=0, atol=1e-9)
        if first.points is not None:
            np.testing.assert_allclose(first.points, second.points, rtol=0, atol=1e-9)
    check()


def test_registration_with_default_seed_is_repeatable(methods):
    """The default registration samples its metric the same way on every call (its seed is
    fixed and positive: SimpleITK reads 0 as "seed from the clock", which is refused)."""
    spec = PairSpec(n_src=8, n_kept=6, n_new=2, jitter_mm=4.0, seed=3)
    pair = spec.pair(methods.folder)
    methods._images()
    method = ImageRegistration(params=RegistrationParams(**TINY_REGISTRATION))
    first, second = method.predict(pair), method.predict(pair)
    np.testing.assert_allclose(first.points, second.points, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="seed must be a positive integer"):
        RegistrationParams(seed=0)


@pytest.mark.parametrize("name", ALL)
def test_permutation_equivariance(methods, name):
    """Reordering the rows of either scan reorders the matches: same node-id pairs, same
    scores (positions are random floats, so no ties arise by chance)."""
    @_settings(name)
    @_with_examples([TIE_1X2, TIE_1X2_KEPT, TIE_2X1, TIE_2X2], "case")
    @given(case=reordered_specs())
    def check(case):
        spec, src_order, dst_order = case
        pair = _pair(methods, name, spec)
        expected = matched(pair, _run(methods, name, pair))
        shuffled = reorder(pair, src_order, dst_order)
        actual = matched(shuffled, _run(methods, name, shuffled))
        assert_same_matching(name, expected, actual, "reordering the nodes")
    check()


@pytest.mark.parametrize("which", ["dst", "src"])
@pytest.mark.parametrize("name", TRANSLATION_INVARIANT)
def test_translation_invariance(methods, name, which):
    """Translating every node of one scan (the later one, or the earlier one) by ``t``
    (|t| <= 100 mm) leaves the matched node-id pairs (and their scores) unchanged."""
    @_settings(name)
    @_with_examples(TIE_TRANSLATIONS, "case")
    @given(case=st.tuples(pair_specs(), translations(100.0)))
    def check(case):
        spec, t = case
        pair = _pair(methods, name, spec)
        expected = matched(pair, _run(methods, name, pair))
        moved = (ScanPair(pair.src, translate(pair.dst, t)) if which == "dst"
                 else ScanPair(translate(pair.src, t), pair.dst))
        actual = matched(moved, _run(methods, name, moved))
        assert_same_matching(name, expected, actual, f"translating the {which} scan by {t}")
    check()
