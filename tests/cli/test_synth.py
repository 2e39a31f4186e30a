import pytest

from lngraph.cli.main import main
from lngraph.io.cohort import read_cohort


def test_synth_command_writes_a_cohort(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "c"), "--patients", "1", "--seed", "3",
                 "--preset", "easy", "--no-images"]) == 0
    cohort = read_cohort(tmp_path / "c")
    assert cohort.patients == ["P0001"] and not cohort.has_images
    assert "wrote" in capsys.readouterr().out


def test_synth_command_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path), "--patients", "0"])
    assert "must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path), "--preset", "extreme"])


def test_synth_nih_without_data_is_a_clean_error(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "c"), "--layouts", "nih", "--nih-root",
                 str(tmp_path / "absent"), "--no-images"]) == 2
    assert "annotations not found" in capsys.readouterr().err
