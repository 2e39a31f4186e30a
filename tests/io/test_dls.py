"""DeepLesion DLS pair JSON → geometry-only cohort: hand-made records and the real file."""

import json

import numpy as np
import pytest

from lngraph.io.cohort import Cohort
from lngraph.io.dls import read_dls, read_dls_pairs
from lngraph.io.errors import InputError

SPACING = {"000001_01_01": [0.5, 0.5, 2.0], "000001_02_01": [0.75, 0.75, 5.0],
           "000001_03_02": [0.6, 0.6, 1.0], "000002_01_01": [0.7, 0.7, 2.5],
           "000002_04_01": [0.8, 0.8, 2.5]}


def _record(src, dst, src_center, dst_center, src_diam=(10.0, 6.0), dst_diam=(8.0, 5.0)):
    return {"source": src, "target": dst,
            "source center": list(src_center), "target center": list(dst_center),
            "source spacing": SPACING[src[:12]], "target spacing": SPACING[dst[:12]],
            "source recist diameter": list(src_diam), "target recist diameter": list(dst_diam)}


def _both_ways(record):
    back = {}
    for key, value in record.items():
        side, _, rest = key.partition(" ")
        other = {"source": "target", "target": "source"}[side]
        back[f"{other} {rest}".strip()] = value
    return [record, back]


A1 = "000001_01_01_010-020.nii.gz"   # patient 1, study 1, series 1, slices 10-20
A1b = "000001_01_01_030-040.nii.gz"  # the same series, another sub-volume
A2 = "000001_02_01_005-015.nii.gz"
A3 = "000001_03_02_000-008.nii.gz"
B1 = "000002_01_01_100-110.nii.gz"
B2 = "000002_04_01_090-100.nii.gz"


@pytest.fixture
def dls_file(tmp_path):
    records = [
        # lesion L of patient 1 followed through three studies (A1 seen in two sub-volumes)
        *_both_ways(_record(A1, A2, (100, 200, 4), (90, 210, 3))),
        *_both_ways(_record(A2, A3, (90, 210, 3), (80, 190, 2))),
        *_both_ways(_record(A1b, A3, (100, 200, -16), (80, 190, 2))),  # z: 30-16 = 10+4
        # a second lesion M of patient 1, only in A1 → A2
        *_both_ways(_record(A1, A2, (300, 100, 5), (310, 120, 6), src_diam=(20, 12))),
        # patient 2
        *_both_ways(_record(B1, B2, (50, 60, 0), (55, 66, 10))),
    ]
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps({f"{k + 1:04d}": r for k, r in enumerate(records)}))
    return path


def test_one_scan_per_series_with_study_ordered_timepoints(dls_file):
    scans = read_dls(dls_file)
    assert [(s.patient_id, s.scan_id, s.timepoint) for s in scans] == [
        ("000001", "000001_01_01", "101"), ("000001", "000001_02_01", "201"),
        ("000001", "000001_03_02", "302"), ("000002", "000002_01_01", "101"),
        ("000002", "000002_04_01", "401")]
    assert all(s.image is None for s in scans)


def test_centres_sizes_and_deduplication(dls_file):
    scans = {s.scan_id: s for s in read_dls(dls_file)}
    a1 = scans["000001_01_01"].nodes
    assert len(a1) == 2  # L seen in three records and two sub-volumes, plus M
    np.testing.assert_allclose(a1.pos, [[50, 100, 28], [150, 50, 30]])  # (x·sx, y·sy, (f+z)·sz)
    np.testing.assert_allclose(a1.long_axis_mm, [5, 10])
    np.testing.assert_allclose(a1.short_axis_mm, [3, 6])
    np.testing.assert_allclose(a1.radius_mm, [2.5, 5])
    a2 = scans["000001_02_01"].nodes
    np.testing.assert_allclose(a2.pos[0], [67.5, 157.5, 40])
    np.testing.assert_allclose(a2.long_axis_mm, [6.0, 6.0])
    np.testing.assert_allclose(scans["000001_03_02"].nodes.pos, [[48, 114, 2]])


def test_union_find_gives_one_track_per_lesion(dls_file):
    cohort = Cohort(read_dls(dls_file))
    tracks = {s.scan_id: list(s.nodes.track_id) for s in cohort.scans.values()}
    assert tracks == {"000001_01_01": ["T0", "T1"], "000001_02_01": ["T0", "T1"],
                      "000001_03_02": ["T0"], "000002_01_01": ["T0"], "000002_04_01": ["T0"]}
    pair = cohort.pair("000001_02_01", "000001_03_02")
    np.testing.assert_array_equal(pair.gt_matches(), [[0, 0]])
    np.testing.assert_array_equal(pair.gt_disappeared(), [1])
    skip = cohort.pair("000001_01_01", "000001_03_02")  # linked only through the 3rd record
    np.testing.assert_array_equal(skip.gt_matches(), [[0, 0]])


def test_pairs_are_read_in_key_order(dls_file):
    pairs = read_dls_pairs(dls_file)
    assert len(pairs) == 10
    src, dst = pairs[0]
    assert (src.scan_id, dst.scan_id) == ("000001_01_01", "000001_02_01")
    assert src.pos == (50.0, 100.0, 28.0)


def test_exact_duplicates_merge_at_any_tolerance(dls_file):
    assert sum(len(s.nodes) for s in read_dls(dls_file, tolerance_mm=1e-9)) == 7


def test_two_lesions_of_one_scan_in_one_track_is_an_error(dls_file):
    records = json.loads(dls_file.read_text(encoding="utf-8"))
    records["9999"] = _record(A1, A2, (300, 100, 5), (90, 210, 3))  # M → L: merges two tracks
    dls_file.write_text(json.dumps(records))
    with pytest.raises(InputError, match=r"pairs\.json: two lesions of scan 000001_01_01 \(at "
                       r"\[50\.0, 100\.0, 28\.0\] and \[150\.0, 50\.0, 30\.0\] mm\) are "
                       "linked into one track by the pairs"):
        read_dls(dls_file)


def _bad(tmp_path, record) -> str:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"0001": _record(A1, A2, (1, 2, 3), (4, 5, 6)), "0002": record}))
    with pytest.raises(InputError) as info:
        read_dls(path)
    return str(info.value)


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda r: r.update(source="scan.nii.gz"),
     "'source' must name a sub-volume 'PPPPPP_SS_II_aaa-bbb.nii.gz', got 'scan.nii.gz'"),
    (lambda r: r.update({"target center": [1, "2", 3]}),
     "'target center' must be a list of 3 finite numbers, got [1, '2', 3]"),
    (lambda r: r.pop("source spacing"),
     "'source spacing' must be a list of 3 finite numbers, got None"),
    (lambda r: r.update({"source spacing": [0.5, 0.7, 1]}),
     "'source spacing' must be positive with equal in-plane values"),
    (lambda r: r.update({"target recist diameter": [0, 3]}),
     "'target recist diameter' must be positive, got [0.0, 3.0]"),
])
def test_bad_records(tmp_path, edit, problem):
    record = _record(A2, A3, (1, 2, 3), (4, 5, 6))
    edit(record)
    assert _bad(tmp_path, record).startswith(f"{tmp_path / 'bad.json'} (record 0002): {problem}")


def test_bad_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{\n  \"0001\": \n}")
    with pytest.raises(InputError, match=r"x\.json, line 3: not valid JSON"):
        read_dls(path)
    path.write_text("[]")
    with pytest.raises(InputError, match="expected a non-empty JSON object of DLS records"):
        read_dls(path)
    with pytest.raises(InputError, match="file not found"):
        read_dls(tmp_path / "missing.json")


# ---- the real validation split (../shared/data) ----

def test_real_valid_split(shared_data):
    path = shared_data / "dls" / "valid.json"
    pairs = read_dls_pairs(path)
    assert len(pairs) == 906
    scans = read_dls(path)
    cohort = Cohort(scans)
    assert len(cohort.patients) == 105
    node_of = {}  # (scan, rounded centre) -> (node_id, track_id)
    for scan in scans:
        for k in range(len(scan.nodes)):
            key = (scan.scan_id, tuple(np.round(scan.nodes.pos[k], 3)))
            node_of[key] = (scan.nodes.node_id[k], scan.nodes.track_id[k])
    links = set()
    for src, dst in pairs:
        a = node_of[(src.scan_id, tuple(np.round(src.pos, 3)))]
        b = node_of[(dst.scan_id, tuple(np.round(dst.pos, 3)))]
        assert a[1] == b[1]  # both ends of every record share a track
        links.add(frozenset([(src.scan_id, a[0]), (dst.scan_id, b[0])]))
    assert len(links) == 453  # every correspondence is stored both ways
    assert all(len(s.nodes) > 0 for s in scans)
