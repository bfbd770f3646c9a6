"""Errors as values: every problem carries where it happened, so the CLI can print `file:line: key: message`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a problem sits: a file, a line or record, and a key path or field."""

    file: str | None = None
    line: int | None = None
    record: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        head = self.file or ""
        if self.line is not None:
            head = f"{head}:{self.line}"
        parts = [p for p in (head, f"record {self.record}" if self.record else None, self.field) if p]
        return ": ".join(parts)


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with its location."""

    message: str
    location: Location = Location()

    def __str__(self) -> str:
        where = str(self.location)
        return f"{where}: {self.message}" if where else self.message


class DscError(Exception):
    """A user-facing failure: a list of located problems and the exit code the CLI should use."""

    exit_code = 1

    def __init__(self, problems: list[Problem] | Problem | str, total: int | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.total = total if total is not None else len(self.problems)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [str(p) for p in self.problems]
        hidden = self.total - len(self.problems)
        if hidden > 0:
            lines.append(f"... and {hidden} more ({self.total} in all)")
        return "\n".join(lines)


class SpecError(DscError):
    """The spec (or the command line) is wrong: exit 2, nothing is read or written."""

    exit_code = 2


class UsageError(DscError):
    """The command line or a `DSC_*` environment setting is wrong: exit 2, nothing is read or written."""

    exit_code = 2


class RecordError(DscError):
    """Input records fail validation, rendering or length checks: exit 1, nothing is written."""

    exit_code = 1
