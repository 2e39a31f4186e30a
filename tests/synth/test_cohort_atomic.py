"""``generate_cohort`` writes its folder whole or not at all."""

import pytest

from lngraph.io.cohort import read_cohort
from lngraph.io.errors import InputError
from lngraph.synth import DEFAULT_GRID, generate_cohort

TINY = DEFAULT_GRID.scaled(0.25)


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_smaller_cohort_leaves_no_stale_images(tmp_path):
    out = tmp_path / "c"
    generate_cohort(out, 2, seed=3, grid=TINY, progress=False)
    assert any(name.startswith("images/P0002_") for name in _files(out))
    (out / "notes.txt").write_text("replaced with the rest")
    generate_cohort(out, 1, seed=3, grid=TINY, progress=False)
    files = _files(out)
    assert not any("P0002" in name for name in files) and "notes.txt" not in files
    images = {p.name for p in (out / "images").iterdir()}
    assert images == {f"{s}.nii.gz" for s in read_cohort(out).scans}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary folder left


def test_overwrite_false_refuses_a_used_folder(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "mine.txt").write_text("x")
    with pytest.raises(InputError, match="already exists and is not empty"):
        generate_cohort(tmp_path / "c", 1, seed=0, images=False, progress=False,
                        overwrite=False)
    assert _files(tmp_path / "c") == ["mine.txt"]
    generate_cohort(tmp_path / "e", 1, seed=0, images=False, progress=False, overwrite=False)
    assert read_cohort(tmp_path / "e").patients == ["P0001"]


def test_an_interrupted_generation_keeps_the_old_cohort(tmp_path, monkeypatch):
    import lngraph.synth.cohort as module

    out = generate_cohort(tmp_path / "c", 2, seed=1, grid=TINY, progress=False)
    before = {name: (out / name).read_bytes() for name in _files(out)}
    real = module._make_patient

    def make(job):
        if job[0] == 2:  # the third patient: two have written their images by now
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(module, "_make_patient", make)
    with pytest.raises(KeyboardInterrupt):
        generate_cohort(out, 3, seed=2, grid=TINY, progress=False)
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert read_cohort(out).patients == ["P0001", "P0002"]
