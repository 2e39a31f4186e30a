"""lngraph.data."""
