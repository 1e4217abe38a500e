"""Process-wide settings that make CPU training fast.

glibc serves large blocks (a minibatch's activations: hundreds of MB) with mmap and unmaps
them on free, so every minibatch page-faults its memory in again: on a 2-core machine that
cost half of PPO's wall time in the kernel. Keeping freed memory in the heap removes it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import warnings

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed memory instead of returning it to the OS (no-op elsewhere).

    Returns whether the setting was applied. Safe to call more than once.
    """
    global _applied
    if _applied or not sys.platform.startswith("linux"):
        return _applied
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    _applied = ok
    return ok


def one_line_warnings(prog: str) -> None:
    """Print warnings as one line, ``PROG: warning: MESSAGE``, as a command-line tool should."""

    def format_warning(message: Warning | str, *_: object, **__: object) -> str:
        return f"{prog}: warning: {message}\n"

    warnings.formatwarning = format_warning  # type: ignore[assignment]
