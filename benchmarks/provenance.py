"""Where a benchmark result came from: the commit of the checkout (imported by the scripts)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def commit() -> str:
    """``git rev-parse --short HEAD`` of this checkout, or ``"unknown"`` outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

