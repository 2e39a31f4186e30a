"""Property-based tests of the readers (Hypothesis).

* Random valid ``scans.csv`` / ``nodes.csv`` / ``matches.csv`` tables round-trip through
  :func:`write_cohort` / :func:`read_cohort` and :func:`write_matches` / :func:`read_matches`.
* Random mutations of a valid table (a column dropped or named twice, text, NaN, inf or 1e308 in
  a number, a bad size, long < short, a duplicate or unknown id, a bad status …) raise
  :class:`InputError` naming the mutated file, and nothing else.
* A compressed image cut anywhere, or with any byte of its compressed data changed, is an
  :class:`InputError` or reads back exactly: never a silently wrong image.

As in tests/properties, the examples are a fixed (derandomized) set of 40 per property and no
example database is written; ``LNGRAPH_PROPERTY_EXAMPLES=N`` runs N fresh random examples.
"""

import csv
import datetime as dt
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lngraph.io import (
    InputError,
    PairPrediction,
    read_cohort,
    read_image,
    read_matches,
    write_cohort,
    write_matches,
)
from lngraph.io.cohort import NODE_COLUMNS, SCAN_COLUMNS, Cohort, NodeTable, Scan
from lngraph.io.matches import MATCH_COLUMNS, STATUSES

_EXAMPLES = os.environ.get("LNGRAPH_PROPERTY_EXAMPLES")
SETTINGS = settings(max_examples=int(_EXAMPLES) if _EXAMPLES else 40, deadline=None,
                    derandomize=_EXAMPLES is None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

#: Ids: no surrounding whitespace (the reader strips fields), but commas, quotes and other
#: punctuation, which the CSV writer must quote.
IDS = st.text(st.characters(categories=("L", "N", "P", "S"), max_codepoint=0x2FF),
              min_size=1, max_size=5)
#: Millimetres with 4 decimals (what write_cohort keeps), so values round-trip exactly.
COORDS = st.integers(-10**9, 10**9).map(lambda k: k / 1e4)
TENTHS_OF_UM = st.integers(1, 10**9)  # sizes, in 1e-4 mm


@st.composite
def node_tables(draw, tracks, min_size=0):
    n = draw(st.integers(min_size, 4))
    ids = draw(st.lists(IDS, min_size=n, max_size=n, unique=True))
    short = [draw(TENTHS_OF_UM) for _ in range(n)]
    long_ = [draw(st.none() | st.integers(short[k], 10**9)) for k in range(n)]
    long_ = [np.nan if k is None else k / 1e4 for k in long_]
    short = [k / 1e4 for k in short]
    track = draw(st.lists(st.sampled_from(tracks), min_size=n, max_size=n, unique=True))
    track = [None if draw(st.booleans()) else t for t in track]
    return NodeTable.from_arrays([[draw(COORDS) for _ in range(3)] for _ in range(n)], short,
                                 long_, node_id=ids, track_id=np.array(track, dtype=object))


@st.composite
def cohorts(draw, with_pair=False):
    """A list of scans: 1-3 patients with 1-3 scans each, integer or ISO-date timepoints.
    ``with_pair``: the first patient has two or more scans and its first scans have nodes."""
    n_scans = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    if with_pair:
        n_scans[0] = max(n_scans[0], 2)
    patients = draw(st.lists(IDS, min_size=len(n_scans), max_size=len(n_scans), unique=True))
    scan_ids = iter(draw(st.lists(IDS, min_size=sum(n_scans), max_size=sum(n_scans),
                                  unique=True)))
    tracks = draw(st.lists(IDS, min_size=4, max_size=6, unique=True))
    scans = []
    for patient, n in zip(patients, n_scans, strict=True):
        if draw(st.booleans()):
            times = [str(t) for t in draw(st.lists(st.integers(0, 10**6), min_size=n,
                                                   max_size=n, unique=True))]
        else:
            times = [d.isoformat() for d in draw(st.lists(
                st.dates(dt.date(1990, 1, 1), dt.date(2040, 1, 1)), min_size=n, max_size=n,
                unique=True))]
        if with_pair and not scans:
            times.sort(key=lambda t: (len(t), t))  # earliest first, either kind
        scans += [Scan(patient, next(scan_ids), t, None,
                       draw(node_tables(tracks, min_size=int(with_pair and not scans and k < 2))))
                  for k, t in enumerate(times)]
    return scans


def _same_nodes(a: NodeTable, b: NodeTable):
    assert list(a.node_id) == list(b.node_id)
    assert list(a.track_id) == list(b.track_id)
    for name in ("pos", "short_axis_mm", "long_axis_mm"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@SETTINGS
@given(scans=cohorts())
def test_cohort_round_trip(scans):
    with tempfile.TemporaryDirectory() as tmp:
        back = read_cohort(write_cohort(tmp, scans))
    assert len(back) == len(scans)
    for scan in scans:
        other = back.scans[scan.scan_id]
        assert (other.patient_id, other.timepoint, other.image) == (
            scan.patient_id, scan.timepoint, None)
        _same_nodes(other.nodes, scan.nodes)


@st.composite
def predictions(draw, cohort, first=None):
    """Random one-to-one predictions for a random subset of the cohort's ordered pairs (and
    the pair ``first``, if given, first)."""
    every = cohort.pairs("all")
    pairs = draw(st.lists(st.sampled_from(every), unique_by=lambda p: (
        p.src.scan_id, p.dst.scan_id), max_size=4)) if every else []
    if first is not None:
        pairs = [first, *(p for p in pairs if (p.src.scan_id, p.dst.scan_id) != (
            first.src.scan_id, first.dst.scan_id))]
    items = []
    for pair in pairs:
        n_src, n_dst = len(pair.src.nodes), len(pair.dst.nodes)
        k = draw(st.integers(0, min(n_src, n_dst)))
        src = draw(st.permutations(range(n_src)))[:k]
        dst = draw(st.permutations(range(n_dst)))[:k]
        scores = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=k,
                               max_size=k))
        items.append((pair, PairPrediction(n_src, n_dst, np.column_stack([src, dst]), scores)))
    return items


@SETTINGS
@given(data=st.data())
def test_matches_round_trip(data):
    cohort = Cohort(data.draw(cohorts()))
    items = data.draw(predictions(cohort))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_matches(Path(tmp) / "matches.csv", items)
        back = read_matches(path, cohort, allow_empty=True)
    expected = {(p.src.scan_id, p.dst.scan_id): pred for p, pred in items
                if pred.n_src + pred.n_dst}  # a pair without nodes has no rows
    assert list(back) == list(expected)
    for key, pred in expected.items():
        order = np.argsort(pred.matches[:, 0])
        np.testing.assert_array_equal(back[key].matches, pred.matches[order])
        np.testing.assert_array_equal(back[key].scores, pred.scores[order])


# ---- mutations: every one is an InputError naming the mutated file ----

def _table(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def _text(header, rows) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


BAD_NUMBERS = ["abc", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "100000.01", "1,5", "0x10",
               "--1"]


def _mutate_nodes(draw, header, rows, scan_ids):
    """One mutation of nodes.csv (rows non-empty)."""
    col = {name: header.index(name) for name in NODE_COLUMNS}
    r = draw(st.integers(0, len(rows) - 1))
    row = rows[r]
    kind = draw(st.sampled_from(["coordinate", "short", "long", "swap", "duplicate_node",
                                 "unknown_scan", "empty_id", "extra_field", "blank_row",
                                 "track_twice"]))
    if kind == "coordinate":
        row[col[draw(st.sampled_from("xyz"))]] = draw(st.sampled_from([*BAD_NUMBERS, ""]))
    elif kind == "short":
        row[col["short_axis_mm"]] = draw(st.sampled_from([*BAD_NUMBERS, "", "0", "-3", "2e5"]))
    elif kind == "long":
        row[col["long_axis_mm"]] = draw(st.sampled_from([*BAD_NUMBERS, "0", "-3", "2e5"]))
    elif kind == "swap":
        row[col["long_axis_mm"]] = repr(float(row[col["short_axis_mm"]]) / 2)
    elif kind == "duplicate_node":
        rows.insert(draw(st.integers(0, len(rows))), list(row))
    elif kind == "unknown_scan":
        row[col["scan_id"]] = draw(IDS.filter(lambda s: s not in scan_ids))
    elif kind == "empty_id":
        row[col[draw(st.sampled_from(["scan_id", "node_id"]))]] = ""
    elif kind == "extra_field":
        row.append("surplus")
    elif kind == "blank_row":
        assume(len(rows) >= 1)
        rows.insert(draw(st.integers(0, len(rows) - 1)), [""] * len(header))
    else:  # track_twice: a second node of the same scan with this node's track
        assume(row[col["track_id"]] != "")
        twin = list(row)
        twin[col["node_id"]] = draw(IDS.filter(lambda s: s not in {
            x[col["node_id"]] for x in rows if x[col["scan_id"]] == row[col["scan_id"]]}))
        rows.append(twin)
    return header, rows


def _mutate_scans(draw, header, rows):
    col = {name: header.index(name) for name in SCAN_COLUMNS}
    r = draw(st.integers(0, len(rows) - 1))
    kind = draw(st.sampled_from(["duplicate_scan", "empty", "timepoint", "same_timepoint",
                                 "missing_image"]))
    if kind == "duplicate_scan":
        twin = list(rows[r])
        twin[col["timepoint"]] = "999999999"  # a timepoint no other scan has
        rows.append(twin)
    elif kind == "empty":
        rows[r][col[draw(st.sampled_from(["patient_id", "scan_id", "timepoint"]))]] = ""
    elif kind == "timepoint":
        rows[r][col["timepoint"]] = draw(st.sampled_from(["soon", "2021-13-01", "1.5", "1e3"]))
    elif kind == "same_timepoint":
        twin = list(rows[r])
        twin[col["scan_id"]] = draw(IDS.filter(lambda s: s not in {x[col["scan_id"]]
                                                                  for x in rows}))
        rows.append(twin)
    else:
        rows[r][col["image"]] = "no/such/image.nii.gz"
    return header, rows


def _mutate_columns(draw, header, rows, required):
    """Drop a required column, or name any column twice."""
    if draw(st.booleans()):
        k = header.index(draw(st.sampled_from(required)))
        return ([h for i, h in enumerate(header) if i != k],
                [[v for i, v in enumerate(row) if i != k] for row in rows])
    k = draw(st.integers(0, len(header) - 1))
    extra = draw(st.sampled_from(["", "0"]))
    return [*header, header[k]], [[*row, extra] for row in rows]


@SETTINGS
@given(data=st.data())
def test_mutated_cohort_tables_raise_input_error(data):
    scans = data.draw(cohorts(with_pair=True))
    with tempfile.TemporaryDirectory() as tmp:
        root = write_cohort(tmp, scans)
        target = data.draw(st.sampled_from(["scans.csv", "nodes.csv"]))
        header, rows = _table((root / target).read_text(encoding="utf-8"))
        if data.draw(st.integers(0, 3)) == 0:
            header, rows = _mutate_columns(data.draw, header, rows, SCAN_COLUMNS
                                           if target == "scans.csv" else NODE_COLUMNS)
        elif target == "scans.csv":
            header, rows = _mutate_scans(data.draw, header, rows)
        else:
            header, rows = _mutate_nodes(data.draw, header, rows, {s.scan_id for s in scans})
        (root / target).write_text(_text(header, rows), encoding="utf-8")
        with pytest.raises(InputError) as info:
            read_cohort(root)
        assert str(info.value).startswith(str(root / target)), str(info.value)


@SETTINGS
@given(data=st.data())
def test_mutated_matches_raise_input_error(data):
    scans = data.draw(cohorts(with_pair=True))
    cohort = Cohort(scans)
    items = data.draw(predictions(cohort, first=cohort.pair(scans[0].scan_id, scans[1].scan_id)))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_matches(Path(tmp) / "matches.csv", items)
        header, rows = _table(path.read_text(encoding="utf-8"))
        col = {name: header.index(name) for name in MATCH_COLUMNS}
        r = data.draw(st.integers(0, len(rows) - 1))
        row = rows[r]
        pair_rows = [x for x in rows if (x[0], x[2]) == (row[0], row[2])]
        kind = data.draw(st.sampled_from(["columns", "unknown_node", "status", "unknown_scan",
                                          "score", "drop_row", "repeat_row", "no_rows"]))
        if kind == "columns":
            header, rows = _mutate_columns(data.draw, header, rows, MATCH_COLUMNS)
        elif kind == "unknown_node":
            side = "src" if row[col["src_node"]] else "dst"
            scan = cohort.scans[row[col[f"{side}_scan"]]]
            row[col[f"{side}_node"]] = data.draw(IDS.filter(
                lambda s: s not in set(scan.nodes.node_id)))
        elif kind == "status":
            row[col["status"]] = data.draw(st.sampled_from(["", "paired", "Matched"]) | IDS
                                           .filter(lambda s: s not in STATUSES))
        elif kind == "unknown_scan":
            row[col[data.draw(st.sampled_from(["src_scan", "dst_scan"]))]] = data.draw(
                IDS.filter(lambda s: s not in cohort.scans))
        elif kind == "score":
            assume(row[col["status"]] == "matched")
            row[col["score"]] = data.draw(st.sampled_from(["high", "inf", "-inf", "1e999", "--1"]))
        elif kind == "drop_row":
            assume(len(pair_rows) >= 2)  # the only row of a pair: dropping it drops the pair
            del rows[r]
        elif kind == "repeat_row":
            rows.insert(r, list(row))
        else:
            rows = []
        path.write_text(_text(header, rows), encoding="utf-8")
        with pytest.raises(InputError) as info:
            read_matches(path, cohort)
        assert str(info.value).startswith(str(path)), str(info.value)


# ---- images: a damaged compressed file is refused or read exactly ----

VOXELS = np.random.default_rng(1).integers(-1000, 1000, size=(6, 7, 8)).astype(np.int16)


@pytest.fixture(scope="module")
def compressed_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    out = {}
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        path = folder / f"scan{suffix}"
        sitk.WriteImage(sitk.GetImageFromArray(VOXELS), str(path), useCompression=True)
        data = path.read_bytes()
        # where the compressed data start: byte 0 for .nii.gz, after the text header otherwise
        start = 0 if suffix == ".nii.gz" else (data.index(b"\n\n") + 2 if suffix == ".nrrd"
                                               else data.index(b"LOCAL\n") + 6)
        out[suffix] = (data, start)
    return out


def _read_or_refuse(data: bytes, suffix: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"scan{suffix}"
        path.write_bytes(data)
        try:
            image = read_image(path)
        except InputError as exc:
            assert str(exc).startswith(str(path))
            return
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), VOXELS)


@SETTINGS
@given(suffix=st.sampled_from([".nii.gz", ".nrrd", ".mha"]), where=st.floats(0, 1),
       damage=st.sampled_from(["cut", "flip"]), bits=st.integers(1, 255))
def test_damaged_compressed_image_is_refused_or_exact(compressed_images, suffix, where, damage,
                                                     bits):
    data, start = compressed_images[suffix]
    k = start + min(int(where * (len(data) - start)), len(data) - start - 1)
    if damage == "cut":
        damaged = data[:k]
    else:
        damaged = data[:k] + bytes([data[k] ^ bits]) + data[k + 1:]
    _read_or_refuse(damaged, suffix)
