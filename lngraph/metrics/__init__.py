"""lngraph.metrics."""
