"""Resident memory of this process, for the benchmarks (Linux ``/proc/self/status``)."""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str) -> float:
    """A memory field of ``/proc/self/status`` (``VmHWM``: peak resident set, ``VmRSS``: now) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB."""
    return status_mb("VmHWM")
