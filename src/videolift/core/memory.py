"""Resident memory of this process (Linux /proc, with getrusage where /proc is missing; 0 on Windows,
which has neither)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: the commands run, their memory figures read 0
    resource = None

# getrusage's ru_maxrss is in kilobytes on Linux, in bytes on macOS.
_MAXRSS_PER_MB = 1 << 20 if sys.platform == "darwin" else 1 << 10


def _maxrss_mb(who: str = "RUSAGE_SELF") -> float:
    if resource is None:
        return 0.0
    return resource.getrusage(getattr(resource, who)).ru_maxrss / _MAXRSS_PER_MB


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
    return _status_mb("VmRSS") or _maxrss_mb()


def own_peak_rss_mb() -> float:
    """Peak resident memory of this program only. getrusage's peak of a process started by fork + exec
    (multiprocessing's spawn) starts at its parent's memory at the fork; VmHWM starts at the exec."""
    return _status_mb("VmHWM") or _maxrss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest finished child."""
    return max(_maxrss_mb(), _maxrss_mb("RUSAGE_CHILDREN"))


# Frame pixels (frames x height x width) one model call processes by default when clips are batched:
# 16 toy clips of 9x64x64. One 49x480x720 CogVideoX clip is 29 times this, so it goes alone.
BATCH_PIXELS = 16 * 9 * 64 * 64


def clips_per_call(frames: int, height: int, width: int, cap: int) -> int:
    """Default clips per VAE or pipeline call: as many as hold BATCH_PIXELS frame pixels, 1 to ``cap``.
    Activations grow with them: a batch sized for toy clips runs real-size clips out of GPU memory."""
    return max(1, min(cap, BATCH_PIXELS // (frames * height * width)))
