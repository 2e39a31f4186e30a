"""Where a benchmark result came from: the commit and the machine (imported by the scripts)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def commit() -> str:
    """``git rev-parse --short HEAD`` of this checkout, or ``"unknown"`` outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """Platform, CPU count and load average, in one line."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.platform()}, {os.cpu_count()} CPUs, load average {load:.1f}"
