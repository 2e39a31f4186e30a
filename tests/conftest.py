"""Shared fixtures. ``shared_data`` points at the real reference data beside the checkout;
every test gets its own user cache directory (``XDG_CACHE_HOME``), so no test writes crops
into the real ``~/.cache/lngraph``."""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny tensors: one thread is faster and steadier

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test is skipped (with the reason) when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA} (only present in the "
                    "development workplace)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory):
    """``XDG_CACHE_HOME`` for fixtures wider than one test (module- and session-scoped ones
    are set up before :func:`user_cache_dir`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache_session")))
        yield


@pytest.fixture(autouse=True)
def user_cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """``XDG_CACHE_HOME`` for this test: a fresh temporary folder (the default crop cache is
    ``$XDG_CACHE_HOME/lngraph/crops``, :func:`lngraph.data.default_cache_dir`)."""
    path = tmp_path_factory.mktemp("xdg_cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path

