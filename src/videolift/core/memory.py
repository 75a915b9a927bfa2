"""Resident memory of this process (Linux /proc, with getrusage where /proc is missing)."""

from __future__ import annotations

import resource
from pathlib import Path


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Resident memory now; the peak so far where /proc is missing."""
    return _status_mb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_peak_rss_mb() -> float:
    """Peak resident memory of this program only. getrusage's peak of a process started by fork + exec
    (multiprocessing's spawn) starts at its parent's memory at the fork; VmHWM starts at the exec."""
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest finished child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


# Frame pixels (frames x height x width) one model call processes by default when clips are batched:
# 16 toy clips of 9x64x64. One 49x480x720 CogVideoX clip is 29 times this, so it goes alone.
BATCH_PIXELS = 16 * 9 * 64 * 64


def clips_per_call(frames: int, height: int, width: int, cap: int) -> int:
    """Default clips per VAE or pipeline call: as many as hold BATCH_PIXELS frame pixels, 1 to ``cap``.
    Activations grow with them: a batch sized for toy clips runs real-size clips out of GPU memory."""
    return max(1, min(cap, BATCH_PIXELS // (frames * height * width)))
