"""The progress-callback protocol shared by every long-running function."""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(fraction_in_0_1, message)``
ProgressFn = Callable[[float, str], None]


def report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    """Call ``progress`` if given, clamping the fraction to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), message)


def scaled(progress: ProgressFn | None, start: float, end: float) -> ProgressFn | None:
    """A callback that maps [0, 1] onto [start, end] of ``progress``, for sub-steps."""
    if progress is None:
        return None
    return lambda f, msg: report(progress, start + (end - start) * f, msg)
