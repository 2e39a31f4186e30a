"""lngraph.models."""
