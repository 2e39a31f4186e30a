"""lngraph.synth."""
