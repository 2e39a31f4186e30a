import math

import numpy as np
import pytest
import torch

from lngraph.data.augment import GeometryAugment, augment_pair, rotation_matrix
from lngraph.data.geometry import AlignmentParams, pair_shifts
from lngraph.data.graph import CROSS, INTRA, complete_edge_index, pair_to_heterodata
from lngraph.io.cohort import NodeTable, Scan, ScanPair

ALIGN = AlignmentParams(gate_mm=15.0, local_scale_mm=30.0)


def make_graph(n_src: int = 12, n_kept: int = 9, n_new: int = 3, seed: int = 0,
               alignment: AlignmentParams | None = ALIGN):
    """A pair graph whose later scan is the first ``n_kept`` earlier nodes moved by 8 mm (in
    another order) plus ``n_new`` new nodes. Radii identify the nodes: earlier node k has
    radius 5 + k, later node j radius 50 + j; cube and views of a node are filled with its
    radius."""
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 150, (n_src, 3))
    order = rng.permutation(n_kept + n_new)
    dst = np.concatenate([src[:n_kept] + [8.0, -3.0, 2.0] + rng.normal(0, 1, (n_kept, 3)),
                          rng.uniform(0, 150, (n_new, 3))])[order]
    dst_tracks = np.array([f"t{k}" if k < n_kept else f"new{k}" for k in range(n_kept + n_new)],
                          object)[order]
    scans = []
    for scan_id, pos, tracks, base in (("a", src, [f"t{k}" for k in range(n_src)], 5.0),
                                       ("b", dst, dst_tracks, 50.0)):
        n = len(pos)
        nodes = NodeTable.from_arrays(pos, np.full(n, 4.0), 2 * (base + np.arange(n)),
                                      track_id=np.array(tracks, object))
        scans.append(Scan("P", scan_id, scan_id, None, nodes))
    pair = ScanPair(*scans)

    def crops(n, base):
        value = (base + np.arange(n))[:, None, None, None]
        return np.broadcast_to(value, (n, 4, 4, 4)).copy(), \
            np.broadcast_to(value, (n, 9, 4, 4)).copy()

    shifts = None if alignment is None else pair_shifts(src, dst, alignment)
    return pair_to_heterodata(pair, crops(n_src, 5.0), crops(n_kept + n_new, 50.0), shifts)


def id_pairs(data) -> set[tuple[float, float]]:
    """The ground-truth matches as (earlier radius, later radius)."""
    label = data[CROSS].edge_label_index
    return set(zip(data["src"].radius[label[0]].tolist(),
                   data["dst"].radius[label[1]].tolist(), strict=True))


def pairwise_distances(pos: torch.Tensor) -> torch.Tensor:
    return (pos[:, None].double() - pos[None].double()).norm(dim=-1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_same_graph(a, b):
    for node_type in ("src", "dst"):
        assert a[node_type].num_nodes == b[node_type].num_nodes
        assert set(a[node_type].keys()) == set(b[node_type].keys())
        for key in a[node_type].keys():
            if isinstance(a[node_type][key], torch.Tensor):
                assert torch.equal(a[node_type][key], b[node_type][key]), (node_type, key)
        assert torch.equal(a[INTRA[node_type]].edge_index, b[INTRA[node_type]].edge_index)
    assert torch.equal(a[CROSS].edge_label_index, b[CROSS].edge_label_index)


def test_the_builder_gives_what_the_tests_assume():
    data = make_graph()
    assert data["src"].radius.tolist() == [5.0 + k for k in range(12)]
    assert len(id_pairs(data)) == 9
    assert all(r1 >= 50 for _, r1 in id_pairs(data))
    assert data["src"].cube[3].unique().tolist() == [8.0]


def test_nothing_switched_on_changes_nothing():
    data = make_graph()
    params = GeometryAugment()
    assert not params.active
    out = augment_pair(data, params, gen())
    assert out is not data
    assert_same_graph(out, data)
    # With the settings the shifts are recomputed, from the float32 centres (the graph's
    # were computed from the float64 ones).
    out = augment_pair(data, params, gen(), ALIGN)
    torch.testing.assert_close(out["src"].shift, data["src"].shift, rtol=0, atol=1e-4)
    out["src"].shift = data["src"].shift
    assert_same_graph(out, data)
    # The generator was not drawn from.
    g = gen(3)
    augment_pair(data, params, g)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=gen(3)))


def test_drop_removes_nodes_and_reindexes_the_ground_truth():
    data = make_graph(n_src=30, n_kept=25, n_new=5)
    before = {k: v.clone() for k, v in data["src"].items() if isinstance(v, torch.Tensor)}
    params = GeometryAugment(drop=0.4)
    assert params.active
    out = augment_pair(data, params, gen(1), ALIGN)
    src_r, dst_r = out["src"].radius.tolist(), out["dst"].radius.tolist()
    assert 0 < len(src_r) < 30 and 0 < len(dst_r) < 30
    # Survivors keep their order and everything that belongs to them.
    assert src_r == sorted(src_r) and set(src_r) <= set(data["src"].radius.tolist())
    for node_type in ("src", "dst"):
        store, old = out[node_type], data[node_type]
        assert store.num_nodes == len(store.radius) == len(store.pos) == len(store.cube)
        index = [old.radius.tolist().index(r) for r in store.radius.tolist()]
        assert torch.equal(store.pos, old.pos[index])      # nothing moved
        assert torch.equal(store.cube[:, 0, 0, 0, 0], store.radius)
        assert torch.equal(store.views[:, :, 0, 0], store.radius[:, None].expand(-1, 9))
        # Intra edges: the complete graph on the remaining nodes.
        assert torch.equal(out[INTRA[node_type]].edge_index,
                           complete_edge_index(store.num_nodes))
    # Each remaining match links the same two original nodes; none is lost or invented.
    kept = {(a, b) for a, b in id_pairs(data) if a in src_r and b in dst_r}
    assert id_pairs(out) == kept and len(kept) < 25
    assert len(id_pairs(out)) == out[CROSS].edge_label_index.shape[1]
    # The input graph is left as it was.
    for key, value in before.items():
        assert torch.equal(data["src"][key], value)
    assert data["src"].num_nodes == 30


def test_rotation_preserves_distances_within_each_scan():
    data = make_graph()
    out = augment_pair(data, GeometryAugment(rotation_deg=30.0), gen(2), ALIGN)
    for node_type in ("src", "dst"):
        old, new = data[node_type].pos, out[node_type].pos
        assert not torch.allclose(old, new, atol=1.0)
        torch.testing.assert_close(pairwise_distances(new), pairwise_distances(old),
                                   rtol=0, atol=1e-3)
        torch.testing.assert_close(new.mean(0), old.mean(0), rtol=0, atol=1e-3)
        # About the centroid, no centre turns by more than 30°.
        a, b = old - old.mean(0), new - old.mean(0)
        cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
        assert (cos >= math.cos(math.radians(30.0)) - 1e-4).all()
        assert torch.equal(out[node_type].radius, data[node_type].radius)
    assert id_pairs(out) == id_pairs(data)


def test_scale_multiplies_each_scans_distances_by_one_factor():
    data = make_graph(alignment=None)
    out = augment_pair(data, GeometryAugment(scale=0.2), gen(4))
    factors = []
    for node_type in ("src", "dst"):
        old, new = pairwise_distances(data[node_type].pos), pairwise_distances(out[node_type].pos)
        off = ~torch.eye(len(old), dtype=torch.bool)
        ratio = new[off] / old[off]
        torch.testing.assert_close(ratio, ratio[0].expand_as(ratio), rtol=1e-4, atol=0)
        factors.append(ratio[0].item())
    assert factors[0] != pytest.approx(1.0) and factors[0] != pytest.approx(factors[1])


def test_jitter_moves_every_centre_a_little():
    data = make_graph(alignment=None)
    out = augment_pair(data, GeometryAugment(jitter_mm=2.0), gen(5))
    move = out["src"].pos - data["src"].pos
    assert (move.abs() > 0).all()
    assert 1.0 < move.std().item() < 3.0
    assert torch.equal(out["src"].radius, data["src"].radius)
    assert "shift" not in out["src"]


def test_translation_moves_each_scan_by_one_vector_and_keeps_the_aligned_centres():
    data = make_graph()
    out = augment_pair(data, GeometryAugment(translation_mm=20.0), gen(12), ALIGN)
    moves = []
    for node_type in ("src", "dst"):
        move = (out[node_type].pos - data[node_type].pos).double()
        torch.testing.assert_close(move, move[0].expand_as(move), rtol=0, atol=1e-4)
        assert move[0].norm() > 1.0
        moves.append(move[0])
    assert not torch.allclose(moves[0], moves[1], atol=1.0)
    # The alignment absorbs it: the earlier nodes' aligned centres move with the later scan.
    aligned = lambda g: (g["src"].pos + g["src"].shift - g["dst"].pos.mean(0)).double()  # noqa: E731
    torch.testing.assert_close(aligned(out), aligned(data), rtol=0, atol=1e-3)


def test_shifts_are_recomputed_from_the_new_centres():
    data = make_graph()
    params = GeometryAugment(drop=0.2, rotation_deg=10.0, scale=0.1, jitter_mm=1.0)
    out = augment_pair(data, params, gen(6), ALIGN)
    expected = pair_shifts(out["src"].pos.double().numpy(), out["dst"].pos.double().numpy(),
                           ALIGN)
    assert out["src"].shift.dtype == torch.float32
    assert out["src"].shift.shape == (out["src"].num_nodes, 3)
    np.testing.assert_allclose(out["src"].shift.numpy(), expected, rtol=1e-6, atol=1e-4)
    assert not np.allclose(out["src"].shift.numpy(),
                           data["src"].shift.numpy()[: out["src"].num_nodes], atol=0.5)
    # A graph without shifts gets them when the settings are given.
    plain = make_graph(alignment=None)
    shifted = augment_pair(plain, GeometryAugment(), gen(), ALIGN)
    np.testing.assert_allclose(shifted["src"].shift.numpy(), data["src"].shift.numpy(),
                               atol=1e-5)


def test_dropping_without_settings_keeps_the_survivors_shifts():
    data = make_graph()
    out = augment_pair(data, GeometryAugment(drop=0.5), gen(7))
    index = [data["src"].radius.tolist().index(r) for r in out["src"].radius.tolist()]
    assert 0 < len(index) < 12
    assert torch.equal(out["src"].shift, data["src"].shift[index])


def test_same_seed_same_result():
    data = make_graph()
    params = GeometryAugment(drop=0.3, rotation_deg=20.0, scale=0.1, jitter_mm=1.0)
    first = augment_pair(data, params, gen(8), ALIGN)
    assert_same_graph(augment_pair(data, params, gen(8), ALIGN), first)
    other = augment_pair(data, params, gen(9), ALIGN)
    assert other["src"].num_nodes != first["src"].num_nodes or \
        not torch.equal(other["src"].pos, first["src"].pos)


def test_scans_without_nodes():
    data = make_graph(n_src=3, n_kept=0, n_new=0)
    assert data["dst"].num_nodes == 0
    params = GeometryAugment(drop=0.5, rotation_deg=20.0, scale=0.1, jitter_mm=1.0)
    out = augment_pair(data, params, gen(10), ALIGN)
    assert out["dst"].pos.shape == (0, 3) and out[CROSS].edge_label_index.shape == (2, 0)
    assert out["src"].shift.shape == (out["src"].num_nodes, 3)
    # Dropping everything is allowed too.
    out = augment_pair(data, GeometryAugment(drop=0.999), gen(11), ALIGN)
    assert out["src"].num_nodes == 0 and out["src"].shift.shape == (0, 3)
    assert out[INTRA["src"]].edge_index.shape == (2, 0)


@pytest.mark.parametrize("params", [GeometryAugment(rotation_deg=5.0),
                                    GeometryAugment(scale=0.1),
                                    GeometryAugment(drop=0.2, jitter_mm=1.0),
                                    GeometryAugment(translation_mm=5.0)])
def test_moving_a_graph_with_shifts_needs_the_alignment_settings(params):
    with pytest.raises(ValueError, match="give the alignment settings"):
        augment_pair(make_graph(), params, gen())
    augment_pair(make_graph(alignment=None), params, gen())   # no shifts: nothing to redo


@pytest.mark.parametrize(("key", "value", "message"), [
    ("drop", 1.0, r"drop must be in \[0, 1\)"),
    ("drop", -0.1, r"drop must be in \[0, 1\)"),
    ("rotation_deg", -1.0, "rotation_deg must be >= 0"),
    ("scale", -0.1, "scale must be >= 0"),
    ("jitter_mm", float("nan"), "jitter_mm must be >= 0"),
    ("translation_mm", -2.0, "translation_mm must be >= 0"),
])
def test_invalid_settings(key, value, message):
    with pytest.raises(ValueError, match=message):
        GeometryAugment(**{key: value})


def test_rotation_matrix():
    r = rotation_matrix(torch.tensor([0.0, 0.0, 2.0]), math.pi / 2)
    torch.testing.assert_close(r @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))
    r = rotation_matrix(torch.tensor([1.0, 2.0, -0.5]), 0.7)
    torch.testing.assert_close(r @ r.T, torch.eye(3))
    assert torch.linalg.det(r).item() == pytest.approx(1.0, abs=1e-6)
