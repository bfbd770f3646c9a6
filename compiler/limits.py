"""Every bound dsc puts on what an untrusted spec or record can make it compute, in one place.

A spec is code-like input people share, and records come from anywhere: a few bytes of either must not hang a build or
eat the machine's memory. A spec that crosses a bound is a located spec error; a record that does is a located record
error (dropped and counted under `on_invalid: skip`). README: "Limits and untrusted specs".
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dsc.compiler.environment import positive_number

YAML_NODES = 100_000
"""Nodes a spec's YAML may expand to, every use of an alias counted again (a 1 KB alias bomb makes billions)."""

YAML_DEPTH = 100
"""How deeply a spec's YAML may nest (PyYAML's scanner slows quadratically with `[[[[...`, and recurses)."""

TEXT_CHARS = 1_000_000
"""The longest string or list a template may build, and the most text one template may render, per record."""

WORK_CHARS = 20_000_000
"""Characters a record's templates may build in all with `*`, `+` and `%` (loops of large values stop here)."""

INT_BITS = 10_000
"""The largest integer (in bits, about 3,000 digits) `*` and `**` may make in a template."""

RANGE_ITEMS = 100_000
"""The most items one `range()` in a template may have."""

RECORD_SECONDS = 2.0
"""Time one record may spend in its derived fields (expressions and regexes) and in its templates."""

RECORD_SECONDS_ENV = "DSC_RECORD_SECONDS"
"""Another per-record time limit, for templates that are slow by right (or a tighter bound on records from anywhere)."""

CSV_FIELD_CHARS = 16_000_000
"""The longest CSV field (Python's csv module stops at 131,072 by default)."""

TEMPLATE_PATH_ENV = "DSC_TEMPLATE_PATH"
"""Extra folders (os.pathsep-separated) that `{file: ...}` templates may come from, for trusted shared templates."""


class LimitError(Exception):
    """A bound was crossed; `reason` is the short text counted in the manifest (`limit: <reason>`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def record_seconds() -> float:
    """The per-record time limit in force: `DSC_RECORD_SECONDS` or RECORD_SECONDS. Passes read it when they are made,
    in the process that plans the build, and carry it to their workers."""
    return positive_number(RECORD_SECONDS_ENV, RECORD_SECONDS)


def time_limit_error(seconds: float, what: str = "took") -> LimitError:
    """The error of a record stopped by the time limit."""
    return LimitError("time", f"{what} longer than {seconds:g} s (the per-record time limit, {RECORD_SECONDS_ENV})")


_deadline: list[float] = []  # the current record's deadline (time.monotonic) and its limit in seconds, while one is set
_budget: list[int] = []  # characters the current record may still build


def check_deadline() -> None:
    """Raise when the current record is past its time: the timer signal calls this, and the sandbox on every call and
    operator, so a record is stopped even where the signal cannot be used (a thread other than the main one)."""
    if _deadline and time.monotonic() > _deadline[0]:
        raise time_limit_error(_deadline[1])


def _on_alarm(signum: int, frame: object) -> None:
    check_deadline()


def charge(chars: int) -> None:
    """Count characters a template built against the current record's budget."""
    if _budget:
        _budget[0] -= chars
        if _budget[0] < 0:
            raise LimitError("template work", f"templates built more than {WORK_CHARS:,} characters for one record")


TICK_SECONDS = 0.1
"""How often the timer signal looks at the current record's deadline."""


@contextmanager
def timed_records() -> Iterator[None]:
    """Around a batch: a repeating timer signal (main thread only) that stops the record past its deadline. One timer
    per batch, not per record: arming a record is then a clock read."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TICK_SECONDS, TICK_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class record_limits:  # noqa: N801 - used like a function: `with record_limits(seconds):`
    """Around one record (inside `timed_records`): its deadline `seconds` from now and its budget of characters built."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        _deadline[:] = [time.monotonic() + self.seconds, self.seconds]
        _budget[:] = [WORK_CHARS]

    def __exit__(self, *exc: object) -> None:
        _deadline.clear()
        _budget.clear()
