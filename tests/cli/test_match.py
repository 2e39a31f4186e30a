"""``lngraph match``: matches.csv schema, Slicer markups, figures, single pairs and errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lngraph.cli import main as cli_main
from lngraph.cli.match import markup_labels, read_pair_nodes
from lngraph.io.cohort import read_cohort
from lngraph.io.errors import InputError
from lngraph.io.matches import MATCH_COLUMNS, PairPrediction, read_matches
from lngraph.io.slicer import read_markups
from lngraph.models import build_matcher, preset, save_checkpoint

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "example_cohort"


@pytest.fixture
def run_cli(monkeypatch):
    """Run ``lngraph`` with only this subcommand registered."""
    monkeypatch.setattr(cli_main, "COMMANDS", ("lngraph.cli.match",))
    return cli_main.main


#: Architecture → the geometry-only ``lite`` config of that matcher.
GEOMETRY = {"graph": preset("lite").with_values({"model.geometry_only": True}),
            "asymmetric": preset("lite").with_values({"model.geometry_only": True,
                                                      "model.architecture": "asymmetric"})}


def _geometry_checkpoint(tmp_path_factory, architecture: str):
    """An untrained geometry-only ``lite`` matcher saved as an lngraph checkpoint."""
    torch.manual_seed(0)
    config = GEOMETRY[architecture]
    path = tmp_path_factory.mktemp("model") / "model.ckpt"
    return save_checkpoint(path, build_matcher(config), config)


@pytest.fixture(scope="module")
def geometry_model(tmp_path_factory):
    """The default (graph) matcher."""
    return _geometry_checkpoint(tmp_path_factory, "graph")


@pytest.fixture(scope="module", params=sorted(GEOMETRY))
def any_geometry_model(request, tmp_path_factory):
    """Each architecture's matcher."""
    return _geometry_checkpoint(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    config = preset("lite")
    path = tmp_path_factory.mktemp("model") / "model.ckpt"
    return save_checkpoint(path, build_matcher(config), config)


def _nodes_csv(path, rows, header="node_id,x,y,z,short_axis_mm,long_axis_mm"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_command_is_registered():
    assert "lngraph.cli.match" in cli_main.COMMANDS


def test_match_cohort(run_cli, any_geometry_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(["match", "--model", str(any_geometry_model), str(EXAMPLE),
                    "--out", str(out)]) == 0
    cohort = read_cohort(EXAMPLE)
    table = pd.read_csv(out / "matches.csv", dtype=str, keep_default_na=False)
    assert tuple(table.columns) == MATCH_COLUMNS
    pairs = cohort.pairs("consecutive")
    assert set(table["status"]) <= {"matched", "disappeared", "new"}
    predictions = read_matches(out / "matches.csv", cohort)  # every node has exactly one row
    assert list(predictions) == [(p.src.scan_id, p.dst.scan_id) for p in pairs]
    for pair in pairs:
        pred = predictions[(pair.src.scan_id, pair.dst.scan_id)]
        rows = table[(table["src_scan"] == pair.src.scan_id)
                     & (table["dst_scan"] == pair.dst.scan_id)]
        assert len(rows) == len(pair.src.nodes) + len(pair.dst.nodes) - len(pred.matches)
        folder = out / "markups" / f"{pair.src.scan_id}__{pair.dst.scan_id}"
        for scan, labels in zip((pair.src, pair.dst), markup_labels(pair, pred), strict=True):
            nodes = read_markups(folder / f"{scan.scan_id}.mrk.json")
            assert sorted(nodes.node_id.tolist()) == sorted(labels)
            order = [labels.index(label) for label in nodes.node_id]
            np.testing.assert_allclose(nodes.pos, scan.nodes.pos[order])
            assert nodes.track_id.tolist() == scan.nodes.track_id[order].tolist()
    printed = capsys.readouterr().out
    assert f"{len(pairs)} scan pair(s)" in printed and "matches.csv" in printed


def test_markup_labels_name_status_and_partner():
    pair = read_cohort(EXAMPLE).pairs()[0]
    n_src, n_dst = len(pair.src.nodes), len(pair.dst.nodes)
    pred = PairPrediction(n_src, n_dst, [[0, 1]])
    src, dst = markup_labels(pair, pred)
    assert src[0] == "n1 -> n2"
    assert src[1:] == [f"n{k} (disappeared)" for k in range(2, n_src + 1)]
    assert dst[1] == "n2 <- n1"
    assert dst[0] == "n1 (new)" and dst[2] == "n3 (new)"


def test_match_single_pair_with_figure(run_cli, any_geometry_model, tmp_path):
    src = _nodes_csv(tmp_path / "before.csv", ["a,0,0,0,10,12", "b,40,0,0,8,",
                                               "c,0,40,-20,9,11"])
    dst = _nodes_csv(tmp_path / "after.csv", ["A,2,1,0,11,13", "B,41,-1,2,8,9"],
                     header="node_id,x,y,z,short_axis_mm,long_axis_mm")
    out = tmp_path / "out"
    assert run_cli(["match", "--model", str(any_geometry_model), "--src-nodes", str(src),
                    "--dst-nodes", str(dst), "--out", str(out), "--figure"]) == 0
    table = pd.read_csv(out / "matches.csv", dtype=str, keep_default_na=False)
    assert set(table["src_scan"]) == {"before"} and set(table["dst_scan"]) == {"after"}
    assert sorted(table["src_node"].replace("", None).dropna()) == ["a", "b", "c"]
    assert sorted(table["dst_node"].replace("", None).dropna()) == ["A", "B"]
    assert (out / "figures" / "before__after.png").read_bytes()[:4] == b"\x89PNG"
    assert len(read_markups(out / "markups" / "before__after" / "before.mrk.json")) == 3


def test_pair_nodes_optional_columns(tmp_path):
    path = _nodes_csv(tmp_path / "n.csv", ["a,1,2,3,10"], header="node_id,x,y,z,short_axis_mm")
    nodes = read_pair_nodes(path, "s")
    assert nodes.node_id.tolist() == ["a"] and np.isnan(nodes.long_axis_mm[0])
    assert nodes.track_id.tolist() == [None]


@pytest.mark.parametrize(("rows", "header", "message"), [
    (["a,1,2,10"], "node_id,x,y,short_axis_mm", "line 1: missing column(s) z"),
    (["a,1,2,3,10", "b,1,oops,3,10"], None, "line 3 (node b of scan bad): y is not a finite "
                                            "number: 'oops'"),
    (["a,1,2,3,-4"], None, "line 2 (node a of scan bad): short_axis_mm must be positive"),
    (["a,1,2,3,10", "a,5,2,3,10"], None, "line 3: duplicate node_id 'a'"),
    (["s,a,1,2,3,10"], "scan_id,node_id,x,y,z,short_axis_mm", "line 1: has a scan_id column"),
])
def test_bad_nodes_csv(run_cli, geometry_model, tmp_path, capsys, rows, header, message):
    bad = _nodes_csv(tmp_path / "bad.csv", rows,
                     header=header or "node_id,x,y,z,short_axis_mm")
    good = _nodes_csv(tmp_path / "good.csv", ["a,1,2,3,10"])
    with pytest.raises(InputError, match="bad.csv"):
        read_pair_nodes(bad, "bad")
    assert run_cli(["match", "--model", str(geometry_model), "--src-nodes", str(bad),
                    "--dst-nodes", str(good), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"lngraph match: error: {bad}, " in error and message in error
    assert not (tmp_path / "out" / "matches.csv").exists()


def test_image_model_needs_images(run_cli, image_model, tmp_path, capsys):
    assert run_cli(["match", "--model", str(image_model), str(EXAMPLE),
                    "--out", str(tmp_path / "out")]) == 2
    assert "matches on image crops, but no image is given" in capsys.readouterr().err


def test_cohort_and_pair_exclude_each_other(run_cli, geometry_model, tmp_path, capsys):
    nodes = _nodes_csv(tmp_path / "n.csv", ["a,1,2,3,10"])
    assert run_cli(["match", "--model", str(geometry_model), str(EXAMPLE),
                    "--src-nodes", str(nodes), "--out", str(tmp_path / "out")]) == 2
    assert "COHORT and --src-nodes exclude each other" in capsys.readouterr().err
    assert run_cli(["match", "--model", str(geometry_model), "--src-nodes", str(nodes),
                    "--out", str(tmp_path / "out")]) == 2
    assert "give a cohort folder (lngraph match COHORT --out DIR), or both --src-nodes and " \
        "--dst-nodes" in capsys.readouterr().err


def test_the_older_cohort_option_still_works(run_cli, geometry_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(["match", "--model", str(geometry_model), "--cohort", str(EXAMPLE),
                    "--out", str(out)]) == 0
    assert (out / "matches.csv").is_file()
    assert run_cli(["match", "--model", str(geometry_model), "--cohort", str(EXAMPLE),
                    str(EXAMPLE), "--out", str(tmp_path / "o2")]) == 2
    assert "give the cohort once" in capsys.readouterr().err


def test_match_with_a_method_that_needs_no_training(run_cli, tmp_path, capsys):
    """``--method nearest`` writes the same outputs, and its matches are the method's."""
    from lngraph.baselines import Nearest

    out = tmp_path / "out"
    assert run_cli(["match", str(EXAMPLE), "--method", "nearest", "--out", str(out)]) == 0
    cohort = read_cohort(EXAMPLE)
    predictions = read_matches(out / "matches.csv", cohort)
    for pair in cohort.pairs():
        expected = Nearest().predict(pair)
        got = predictions[(pair.src.scan_id, pair.dst.scan_id)]
        assert sorted(map(tuple, got.matches.tolist())) == \
            sorted(map(tuple, expected.matches.tolist()))
        assert (out / "markups" / f"{pair.src.scan_id}__{pair.dst.scan_id}").is_dir()
    assert "--method nearest" in capsys.readouterr().out


@pytest.mark.parametrize("method, message", [
    ("lgm", "this method is trained first; give a trained model with --model"),
    ("nope", "unknown method; methods that need no training: nearest, pointset"),
    ("registration", "reads CT images, but no image is given"),
])
def test_match_method_errors(run_cli, tmp_path, capsys, method, message):
    assert run_cli(["match", str(EXAMPLE), "--method", method, "--out",
                    str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_model_and_method_exclude_each_other(run_cli, geometry_model, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(["match", str(EXAMPLE), "--method", "nearest", "--model", str(geometry_model),
                 "--out", str(tmp_path / "out")])
    assert "not allowed with argument" in capsys.readouterr().err


def test_model_by_shipped_name_and_default(run_cli, geometry_model, monkeypatch, tmp_path,
                                           capsys):
    """``--model NAME`` and no ``--model`` resolve to the shipped checkpoints (here a
    stand-in folder): the geometry model for a cohort without images."""
    import shutil

    from lngraph.models import zoo

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copyfile(geometry_model, shipped / "lite-geometry.ckpt")
    monkeypatch.setattr(zoo, "SHIPPED_DIR", shipped)
    for extra in ([], ["--model", "lite-geometry"]):
        out = tmp_path / f"out{len(extra)}"
        assert run_cli(["match", str(EXAMPLE), "--out", str(out), *extra]) == 0
        assert f"model {shipped / 'lite-geometry.ckpt'}" in capsys.readouterr().out
    assert run_cli(["match", str(EXAMPLE), "--model", "lite-image", "--out",
                    str(tmp_path / "o")]) == 2
    assert "the shipped model 'lite-image' is missing" in capsys.readouterr().err
    assert run_cli(["match", str(EXAMPLE), "--model", "no-such", "--out",
                    str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a shipped model name" in err and "lite-geometry" in err


def test_bad_checkpoint(run_cli, tmp_path, capsys):
    junk = tmp_path / "model.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert run_cli(["match", "--model", str(junk), str(EXAMPLE),
                    "--out", str(tmp_path / "out")]) == 2
    assert f"{junk}: not a readable lngraph checkpoint" in capsys.readouterr().err


MATCH_WITHOUT_LIGHTNING = """
import sys
from lngraph.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("lightning", "pytorch_lightning", "optuna", "lngraph.train",
                           "lngraph.bench", "lngraph.tune") if m in sys.modules)
print("LOADED:" + ",".join(heavy))
print("MATPLOTLIB:" + str("matplotlib" in sys.modules))
sys.exit(code)
"""


def test_match_loads_no_training_code(geometry_model, tmp_path):
    """``lngraph match`` in a fresh process: the inference path imports no Lightning, no
    Optuna and none of lngraph's training, leaderboard or tuning packages."""
    import subprocess
    import sys

    for figure in (True, False):
        out = tmp_path / f"out-{figure}"
        result = subprocess.run(
            [sys.executable, "-c", MATCH_WITHOUT_LIGHTNING, "match", "--model",
             str(geometry_model), str(EXAMPLE), "--out", str(out)]
            + (["--figure"] if figure else []), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "LOADED:\n" in result.stdout, result.stdout
        # matplotlib only when a figure is drawn
        assert f"MATPLOTLIB:{figure}" in result.stdout, result.stdout
        assert (out / "matches.csv").is_file()
