"""lngraph.nn."""
