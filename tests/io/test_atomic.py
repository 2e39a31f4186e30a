import os
import stat

import pytest

from lngraph.io.atomic import atomic_path, write_text_atomic


def test_output_gets_umask_permissions_not_0600(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failure_leaves_no_file_and_no_temp(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.csv") as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
