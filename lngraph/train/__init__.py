"""lngraph.train."""
