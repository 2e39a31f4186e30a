"""lngraph.tune."""
