import pytest

from lngraph.baselines.base import REGISTRY


@pytest.fixture
def registry():
    """Restore the registry after a test that registers methods."""
    saved = dict(REGISTRY)
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(saved)
