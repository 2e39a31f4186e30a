"""Scan pairs as HeteroData: contents of one graph and every index after PyG batching."""

import tempfile
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch_geometric.loader import DataLoader

from lngraph.data.crops import CropParams
from lngraph.data.geometry import AlignmentParams, alignment_key, pair_shifts
from lngraph.data.graph import complete_edge_index, pair_graphs, pair_to_heterodata
from lngraph.io.cohort import NodeTable, Scan, ScanPair
from lngraph.io.image import write_image
from lngraph.matching.alignment import alignment_shifts

SRC_INTRA = ("src", "intra", "src")
DST_INTRA = ("dst", "intra", "dst")
CROSS = ("src", "cross", "dst")


def _scan(scan_id, tracks, timepoint="1", offset=0.0):
    n = len(tracks)
    pos = offset + np.arange(3 * n, dtype=float).reshape(n, 3)
    nodes = NodeTable.from_arrays(pos, np.full(n, 6.0), 10.0 + np.arange(n),
                                  node_id=[f"n{k}" for k in range(n)], track_id=tracks)
    return Scan("P" + scan_id, scan_id, timepoint, None, nodes)


def _pair(name, src_tracks, dst_tracks):
    return ScanPair(_scan(name + "a", src_tracks), _scan(name + "b", dst_tracks, "2", 100.0))


def _crops(n, size=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size, size)), rng.random((n, 9, size, size))


def test_complete_edge_index():
    assert complete_edge_index(3).tolist() == [[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]]
    assert complete_edge_index(1).shape == (2, 0) and complete_edge_index(0).shape == (2, 0)
    assert complete_edge_index(0).dtype == torch.long


def test_one_pair():
    pair = _pair("x", ["A", "B", "C", None], ["C", "D", "A"])
    src_crops, dst_crops = _crops(4), _crops(3, seed=1)
    data = pair_to_heterodata(pair, src_crops, dst_crops)
    assert data.node_types == ["src", "dst"]
    assert set(data.edge_types) == {SRC_INTRA, DST_INTRA, CROSS}
    assert data.src_scan == "xa" and data.dst_scan == "xb" and data.patient_id == "Pxa"
    src, dst = data["src"], data["dst"]
    assert src.num_nodes == 4 and dst.num_nodes == 3
    assert src.pos.dtype == torch.float32 and torch.equal(src.pos, torch.tensor(
        pair.src.nodes.pos, dtype=torch.float32))
    assert src.radius.tolist() == [5.0, 5.5, 6.0, 6.5]  # long axis / 2
    assert "shift" not in src and "unmatched" not in src
    assert data[CROSS].edge_label_index.tolist() == [[0, 2], [2, 0]]
    assert src.cube.shape == (4, 1, 4, 4, 4) and src.cube.dtype == torch.float32
    assert dst.views.shape == (3, 9, 4, 4) and dst.views.dtype == torch.float32
    np.testing.assert_allclose(dst.cube[:, 0].numpy(), dst_crops[0].astype(np.float32))
    assert data[SRC_INTRA].edge_index.shape == (2, 12)
    assert data[DST_INTRA].edge_index.shape == (2, 6)
    data.validate()


def test_geometry_only_has_no_crops():
    data = pair_to_heterodata(_pair("x", ["A"], ["A"]))
    assert "cube" not in data["src"] and "views" not in data["dst"]


def test_cubes_with_channel_axis_accepted_and_bad_crops_rejected():
    pair = _pair("x", ["A", "B"], ["A"])
    cubes, views = _crops(2)
    data = pair_to_heterodata(pair, (cubes[:, None], views))
    assert data["src"].cube.shape == (2, 1, 4, 4, 4)
    with pytest.raises(ValueError, match=r"cubes of scan xa have shape \(3, 1, 4, 4, 4\)"):
        pair_to_heterodata(pair, _crops(3))
    with pytest.raises(ValueError, match=r"views of scan xb have shape \(1, 8, 4, 4\)"):
        pair_to_heterodata(pair, None, (cubes[:1], views[:1, :8]))


def test_batching_keeps_every_index_right():
    pairs = [
        _pair("p", ["A", "B", "C"], ["B", "D"]),
        _pair("q", [], ["E", "F"]),                       # a scan with 0 nodes
        _pair("r", ["G", "H", "I", "J"], ["J", "H", "G"]),
        _pair("s", ["K"], []),
    ]
    crops = {p.src.scan_id: _crops(len(p.src.nodes), seed=k) for k, p in enumerate(pairs)}
    crops |= {p.dst.scan_id: _crops(len(p.dst.nodes), seed=10 + k) for k, p in enumerate(pairs)}
    shifts = {p.src.scan_id: np.full((len(p.src.nodes), 3), float(k)) for k, p in enumerate(pairs)}
    graphs = [pair_to_heterodata(p, crops[p.src.scan_id], crops[p.dst.scan_id],
                                 shifts[p.src.scan_id]) for p in pairs]
    batch = next(iter(DataLoader(graphs, batch_size=4, shuffle=False)))

    n_src, n_dst = [3, 0, 4, 1], [2, 2, 3, 0]
    assert batch["src"].ptr.tolist() == [0, 3, 3, 7, 8]
    assert batch["dst"].ptr.tolist() == [0, 2, 4, 7, 7]
    assert batch["src"].batch.tolist() == [0, 0, 0, 2, 2, 2, 2, 3]
    assert batch["dst"].batch.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert batch.src_scan == ["pa", "qa", "ra", "sa"]
    assert batch["src"].cube.shape == (8, 1, 4, 4, 4)
    assert batch["dst"].views.shape == (7, 9, 4, 4)

    for node_type, sizes, intra in (("src", n_src, SRC_INTRA), ("dst", n_dst, DST_INTRA)):
        edge_index = batch[intra].edge_index
        assert edge_index.shape[1] == sum(n * (n - 1) for n in sizes)
        graph_of = batch[node_type].batch
        assert torch.equal(graph_of[edge_index[0]], graph_of[edge_index[1]])  # stays inside
        assert not (edge_index[0] == edge_index[1]).any()

    src_ptr, dst_ptr = batch["src"].ptr, batch["dst"].ptr
    shifts = [torch.tensor([[src_ptr[k]], [dst_ptr[k]]]) for k in range(len(graphs))]
    expected = torch.cat([g[CROSS].edge_label_index + shift
                          for g, shift in zip(graphs, shifts, strict=True)], dim=1)
    got = batch[CROSS].edge_label_index
    assert torch.equal(got, expected)
    # Every GT match joins two nodes of the same graph.
    assert torch.equal(batch["src"].batch[got[0]], batch["dst"].batch[got[1]])
    assert got.tolist() == [[1, 3, 4, 6], [0, 6, 5, 4]]
    for k, g in enumerate(graphs):
        sl = slice(int(src_ptr[k]), int(src_ptr[k + 1]))
        assert torch.equal(batch["src"].pos[sl], g["src"].pos)
        assert torch.equal(batch["src"].shift[sl], g["src"].shift)
    assert batch["src"].shift[:, 0].tolist() == [0, 0, 0, 2, 2, 2, 2, 3]
    assert batch.get_example(1)["src"].num_nodes == 0


def test_shifts_are_stored_and_checked():
    pair = _pair("x", ["A", "B"], ["A"])
    data = pair_to_heterodata(pair, shifts=np.ones((2, 3)))
    assert data["src"].shift.dtype == torch.float32
    assert data["src"].shift.tolist() == [[1.0] * 3] * 2
    with pytest.raises(ValueError, match=r"shifts of scan xa have shape \(3, 3\)"):
        pair_to_heterodata(pair, shifts=np.ones((3, 3)))


def test_pair_graphs_compute_shifts_once_and_cache_them(tmp_path):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (6, 3))
    pair = ScanPair(Scan("P", "a", "1", None, NodeTable.from_arrays(src, np.full(6, 6.0))),
                    Scan("P", "b", "2", None, NodeTable.from_arrays(src + [5.0, -3.0, 2.0],
                                                                    np.full(6, 6.0))))
    params = AlignmentParams(gate_mm=15.0, local_scale_mm=30.0)
    (graph,) = pair_graphs([pair], alignment=params, cache_dir=tmp_path)
    np.testing.assert_allclose(graph["src"].shift.numpy(), [[5.0, -3.0, 2.0]] * 6, atol=1e-5)
    np.testing.assert_allclose(graph["src"].shift.numpy(),
                               alignment_shifts(src, src + [5.0, -3.0, 2.0], 15.0, 30.0),
                               atol=1e-5)
    entry = tmp_path / "alignment" / f"{alignment_key(src, src + [5.0, -3.0, 2.0], params)}.npy"
    assert entry.is_file()
    np.save(entry, np.full((6, 3), 7.0))            # a cached entry is what gets read
    np.testing.assert_array_equal(pair_shifts(src, src + [5.0, -3.0, 2.0], params, tmp_path),
                                  np.full((6, 3), 7.0))
    entry.write_bytes(b"garbage")                    # a corrupt entry is recomputed
    np.testing.assert_allclose(pair_shifts(src, src + [5.0, -3.0, 2.0], params, tmp_path),
                               [[5.0, -3.0, 2.0]] * 6, atol=1e-9)
    other = AlignmentParams(gate_mm=15.0, local_scale_mm=0.0)
    assert alignment_key(src, src, params) != alignment_key(src, src, other)
    rigid = AlignmentParams(gate_mm=15.0, local_scale_mm=30.0, rigid=True)
    searched = AlignmentParams(gate_mm=15.0, local_scale_mm=30.0, rigid=True,
                               rotation_search=True)
    assert len({alignment_key(src, src, p) for p in (params, rigid, searched)}) == 3
    # the search only acts on the rigid alignment: without it the key stays the same
    assert alignment_key(src, src, params) == alignment_key(
        src, src, AlignmentParams(gate_mm=15.0, local_scale_mm=30.0, rotation_search=True))
    (plain,) = pair_graphs([pair])
    assert "shift" not in plain["src"] and "cube" not in plain["src"]
    with pytest.raises(ValueError, match="gate_mm must be > 0"):
        AlignmentParams(gate_mm=0.0)


def test_two_scans_sharing_an_id_keep_their_own_crops():
    """Two different ``Scan`` objects with one ``scan_id`` (e.g. edited node tables) never
    share crops inside one ``pair_graphs`` call."""
    image = sitk.GetImageFromArray(np.linspace(-200, 300, 20 * 20 * 20, dtype=np.float32)
                                   .reshape(20, 20, 20))
    image.SetSpacing((2.0, 2.0, 2.0))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(image, f"{tmp}/ct.nrrd")
        a = Scan("P", "s1", "1", path, NodeTable.from_arrays([[10.0, 10.0, 10.0]], [6.0]))
        b = replace(a, nodes=NodeTable.from_arrays([[30.0, 30.0, 30.0]], [6.0]))
        later = Scan("P", "s2", "2", path, NodeTable.from_arrays([[12.0, 10.0, 10.0]], [6.0]))
        crops = CropParams(size=6)
        first, second = pair_graphs([ScanPair(a, later), ScanPair(b, later)], crops=crops)
        assert not torch.equal(first["src"].cube, second["src"].cube)
        assert torch.equal(first["dst"].cube, second["dst"].cube)
