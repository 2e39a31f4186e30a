"""lngraph.nn.conv."""
