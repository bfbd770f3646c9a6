"""What makes a run resumable: the output lines and a journal beside them (`<output>.journal.jsonl`).

Request k has a fixed prompt (its examples are drawn by a generator seeded with the spec's seed and k), so the
journal only needs to hold what came back. Its lines, appended and flushed one at a time:

    {"settings": {...}}                                          first line: what the run was started with
    {"request": k, "text": ..., "finish_reason": ..., ...}      a response, written the moment it arrives
    {"request": k, "error": "..."}                               a request that failed after its retries
    {"done": k, "next": [k2, j], "kept": n, "dropped": {...}}    request k processed; go on at request k2, candidate j

Responses are processed strictly in request order, and a request's records reach the output before its "done" line.
So after a crash (kill -9, Ctrl-C, power loss of the last lines) the state is: every request before the last "done"
is finished; responses journaled after it are reused, never asked for again (a batch killed half-way re-sends only
the requests that had not answered); output records of a request with no "done" line are cut off and that request
is processed again from its journaled text, which gives the same records. A torn last line in either file is cut.
Each response line carries the max_tokens it was answered with, so a resumed run starts from a context-length cut
an earlier run found instead of finding it again.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dsc.compiler.errors import Location, Problem, SpecError


def journal_path(output: Path) -> Path:
    return output.with_name(output.name + ".journal.jsonl")


@dataclass
class State:
    """Where a run stands: the next (request, candidate) to process, responses not yet processed, totals so far."""

    next_request: int = 0
    next_candidate: int = 0
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)
    issued: int = 0
    """One past the highest request id ever journaled: new requests start here."""
    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    max_tokens: int | None = None
    """The smallest max_tokens an answer was journaled with: where context-length cuts left it."""


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a file; a torn last line (no newline) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    out = []
    for line in data[:good].splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise SpecError(Problem("not a line dsc generate wrote; use a new output path", Location(str(path)))) from None
    if good < len(data):
        with path.open("r+b") as fh:
            fh.truncate(good)
    return out


def check_writable(output: Path) -> None:
    """Make the output's folder, or say in one located line why it cannot be written there (exit 2)."""
    problem = None
    folder = next(p for p in (output.parent, *output.parent.parents) if p.exists() or p == p.parent)
    if output.is_dir():
        problem = "is a folder; give the output as a file path (e.g. .../generated.jsonl)"
    elif not folder.is_dir():
        problem = f"cannot be written: {folder} is a file, not a folder"
    else:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot create its folder {output.parent}: {exc.strerror or exc}"
        else:
            problem = _unwritable(output)
    if problem:
        raise SpecError(Problem(problem, Location(str(output))))


def _unwritable(output: Path) -> str | None:
    """Why the output or its journal cannot be appended to (a folder that takes no new file, a file that is read-only)."""
    for path in (output, journal_path(output)):
        if path.exists():
            try:
                path.open("a", encoding="utf-8").close()
            except OSError as exc:
                return f"cannot be written: {path} ({exc.strerror or exc})"
    try:
        tempfile.TemporaryFile(dir=output.parent).close()
    except OSError as exc:
        return f"cannot be written: the folder {output.parent} takes no new file ({exc.strerror or exc})"
    return None


def load(output: Path, settings: dict[str, Any]) -> State:
    """The state of an earlier run on `output` (a fresh one when there is none); its output is cut back to the
    records of finished requests."""
    journal = journal_path(output)
    if not journal.exists():
        if output.exists() and output.stat().st_size:
            message = f"exists and has no {journal.name} beside it: dsc generate only appends to its own output"
            raise SpecError(Problem(message, Location(str(output))))
        return State()
    lines = _read_lines(journal)
    if not lines or "settings" not in lines[0]:
        raise SpecError(Problem("not a dsc generate journal; use a new output path", Location(str(journal))))
    if lines[0]["settings"] != settings and len(lines) == 1 and not (output.exists() and output.stat().st_size):
        journal.unlink()  # nothing was asked yet (the endpoint was wrong, say): start over under the new settings
        return State()
    if lines[0]["settings"] != settings:
        changed = sorted(k for k in settings if lines[0]["settings"].get(k) != settings[k])
        message = (
            f"{output} was generated with other settings ({', '.join(changed)} changed); to resume, restore them; "
            f"to start over, use a new output path or delete {output.name} and {journal.name}"
        )
        raise SpecError(Problem(message, Location(str(journal), 1)))
    state = State()
    for line in lines[1:]:
        if "done" in line:
            state.next_request, state.next_candidate = line["next"]
            for reason, n in line["dropped"].items():
                state.dropped[reason] = state.dropped.get(reason, 0) + n
        else:
            state.responses[line["request"]] = line
            state.issued = max(state.issued, line["request"] + 1)
            if "max_tokens" in line:
                state.max_tokens = min(line["max_tokens"], state.max_tokens or line["max_tokens"])
    records = _read_lines(output)
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not all(isinstance(record.get(k), int) for k in ("request", "candidate")):
            message = "not a record dsc generate wrote (no request/candidate); use a new output path"
            raise SpecError(Problem(message, Location(str(output), number)))
    finished = [r for r in records if (r["request"], r["candidate"]) < (state.next_request, state.next_candidate)]
    if len(finished) < len(records):
        _rewrite(output, finished)
    state.kept = finished
    state.responses = {k: v for k, v in state.responses.items() if k >= state.next_request}
    return state


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


class Writer:
    """Appends to the output and the journal, flushing each line so a killed process leaves whole lines behind."""

    def __init__(self, output: Path, settings: dict[str, Any], fresh: bool) -> None:
        output.parent.mkdir(parents=True, exist_ok=True)
        self.output: IO[str] = output.open("a", encoding="utf-8")
        self.journal: IO[str] = journal_path(output).open("a", encoding="utf-8")
        if fresh:
            self._line(self.journal, {"settings": settings})

    @staticmethod
    def _line(fh: IO[str], value: dict[str, Any]) -> None:
        fh.write(json.dumps(value, ensure_ascii=False) + "\n")
        fh.flush()

    def response(self, entry: dict[str, Any]) -> None:
        self._line(self.journal, entry)

    def record(self, record: dict[str, Any]) -> None:
        self._line(self.output, record)

    def done(self, request: int, next_at: tuple[int, int], kept: int, dropped: dict[str, int], failed: bool) -> None:
        """Request `request` is processed (its records are in the output); processing goes on at `next_at`."""
        self._line(self.journal, {"done": request, "next": list(next_at), "kept": kept, "dropped": dropped, "failed": failed})

    def close(self) -> None:
        for fh in (self.output, self.journal):
            os.fsync(fh.fileno())
            fh.close()
