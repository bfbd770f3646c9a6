"""Settings read from `DSC_*` environment variables: chosen by whoever runs dsc, never by a spec (a shared spec must
not lift its own bounds), and read in the process that plans the build, so worker processes use the same values."""

from __future__ import annotations

import math
import os

from dsc.compiler.errors import UsageError


def positive_number(name: str, default: float) -> float:
    """`name`'s value as a number above 0, or `default` where it is unset or empty; anything else is a usage error
    naming the variable (not a ValueError traceback halfway into a build)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{name}={raw!r}: must be a number above 0 (unset it for the default, {default:g})")
    return value


def positive_int(name: str, default: int) -> int:
    """`name`'s value as a whole number above 0, or `default` where it is unset or empty (else a usage error)."""
    value = positive_number(name, default)
    if value != int(value):
        raise UsageError(f"{name}={os.environ[name].strip()!r}: must be a whole number above 0 (unset it for the default, {default})")
    return int(value)
