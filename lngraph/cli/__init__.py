"""Command-line interface; the only layer that sits on top of everything."""
