"""The batched inference path gives the matches the old per-pair rule gave on fixed weights.

``fixtures/inference_regression.pt`` was recorded with commit 7298513, before the refactor
that moved the alignment into graph building and the decision into
:func:`~lngraph.matching.batched.batched_assignment` (Hungarian + threshold, SCB correction
and aligned distances were then computed per pair inside the model): for each config of
:data:`CONFIGS`, a seeded untrained matcher's weights (``torch.manual_seed(3)``) and its
matches and scores on :func:`case_pairs` at the config's threshold and at threshold 0.

The fixtures are of the asymmetric matcher with the parameter-free SEAG of that time (what a
checkpoint of format 2 or 3 implies), so every config is ``model.architecture: asymmetric``
with ``model.seag_learn_q: false`` and the translation alignment of that time
(``model.position_rigid: false``).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from lngraph.data.geometry import pair_shifts
from lngraph.data.graph import pair_to_heterodata
from lngraph.io.cohort import NodeTable, Scan, ScanPair
from lngraph.models import (
    AsymmetricMatcher,
    alignment_params,
    build_matcher,
    preset,
    to_predictions,
)

FIXTURE = Path(__file__).parent / "fixtures" / "inference_regression.pt"
CROP = 12
BASE = preset("lite").updated(model={"architecture": "asymmetric", "seag_learn_q": False,
                                      "position_rigid": False,
                                      "encoder2d_widths": (4, 8, 8),
                                      "encoder3d_widths": (4, 8, 8), "feature_dim": 16,
                                      "scb_hidden": 8},
                               crops={"size": CROP})
#: Name → config of every case.
CONFIGS = {
    "lite": BASE,
    "lite_scb": BASE.with_values({"model.use_scb": True}),
    "scb_reassign": BASE.with_values({"model.use_scb": True, "model.scb_reassign": True,
                                      "model.position_prior": False}),
    "appearance": BASE.with_values({"model.use_seag": False, "model.position_prior": False}),
    "geometry": BASE.with_values({"model.geometry_only": True, "model.position_local_mm": 0.0}),
}


def case_pairs() -> list[tuple[ScanPair, tuple, tuple]]:
    """Three scan pairs (one with an empty later scan) with seeded random crops:
    ``[(pair, (src cubes, src views), (dst cubes, dst views))]``."""
    rng = np.random.default_rng(7)
    out = []
    for k, (n1, n2) in enumerate(((7, 6), (4, 5), (3, 0))):
        src = rng.uniform(0, 120, (n1, 3))
        kept = min(n1, n2) - 1 if min(n1, n2) > 1 else 0
        dst = np.concatenate([src[:kept] + [8.0, -5.0, 3.0] + rng.normal(0, 2, (kept, 3)),
                              rng.uniform(0, 120, (n2 - kept, 3))])
        r1, r2 = rng.uniform(6, 16, n1), rng.uniform(6, 16, n2)
        t1 = [f"T{k}_{i}" for i in range(n1)]
        t2 = t1[:kept] + [f"N{k}_{i}" for i in range(n2 - kept)]
        a = Scan(f"P{k}", f"P{k}_a", "1", None, NodeTable.from_arrays(src, r1 / 2, r1,
                                                                       track_id=t1))
        b = Scan(f"P{k}", f"P{k}_b", "2", None, NodeTable.from_arrays(dst.reshape(-1, 3),
                                                                       r2 / 2, r2, track_id=t2))
        crops = [(rng.random((n, CROP, CROP, CROP), dtype=np.float32),
                  rng.random((n, 9, CROP, CROP), dtype=np.float32)) for n in (n1, n2)]
        out.append((ScanPair(a, b), crops[0], crops[1]))
    return out


@pytest.fixture(scope="module")
def recorded():
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_equal_the_recorded_ones(name, recorded):
    config, want = CONFIGS[name], recorded[name]
    model = build_matcher(config)
    assert isinstance(model, AsymmetricMatcher)
    assert model.seag is None or not model.seag.learn_q
    model.load_state_dict(want["state_dict"])
    geometry = config.model.geometry_only
    align = alignment_params(config)
    graphs = [pair_to_heterodata(
        p, None if geometry else a, None if geometry else b,
        None if align is None else pair_shifts(p.src.nodes.pos, p.dst.nodes.pos, align))
        for p, a, b in case_pairs()]
    batch = next(iter(DataLoader(graphs, batch_size=len(graphs))))
    for threshold, key in ((None, ""), (0.0, "all_")):
        got = to_predictions(model.match(batch, threshold))
        for k, pred in enumerate(got):
            assert pred.matches.tolist() == want[f"{key}matches"][k].tolist(), (name, k, key)
            torch.testing.assert_close(torch.as_tensor(pred.scores),
                                       want[f"{key}scores"][k], atol=1e-5, rtol=0)
