"""The generate loop: send prompts, journal what comes back, and turn responses into records in request order.

Request k's examples are drawn from the seeds by a generator seeded with (spec seed, k), so a request re-sent after a
crash asks the same thing. Requests go out a batch (`requests_per_batch`) at a time, as many batches at once as
`concurrency` allows (by default one: Alpaca's send-a-batch, wait, process). Responses are journaled as they arrive
and processed strictly in request order: parse, filters, novelty against the seeds and every record kept before, and
the output gets exactly `num_instructions` records. Requests still out when that count is reached are waited for and
journaled (they are paid for), and a later run with a larger count starts from them. See journal.py for resuming.

Bounds: requests sent and not yet processed (out, or answered behind a slower one) never pass `concurrency`, and a
new batch waits while those already out should bring the records still needed, at the rate requests have kept
records so far. A run that keeps no new record for `stall.requests` requests in a row or `stall.seconds` stops with
what it has (exit 1, resumable), instead of asking an endpoint whose answers are all alike, or that never answers,
for ever.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dsc.compiler.errors import DscError, Location, Problem, SpecError
from dsc.compiler.generate import journal
from dsc.compiler.generate.client import Client, Completion, RequestFailed
from dsc.compiler.generate.encoding import Task, encode_prompt, parse_completion
from dsc.compiler.generate.novelty import ROUGE_L, MinHashNovelty, Novelty, RougeNovelty
from dsc.compiler.generate.spec import GenerateSpec
from dsc.compiler.sandbox import template
from tqdm import tqdm

TOO_SIMILAR = "too similar"
MALFORMED = "malformed"
TRUNCATED = "truncated"
FAILED_IN_A_ROW = 2
"""Batches' worth of consecutive failed requests after which the run stops (exit 1; rerun to resume)."""


RESUME = "run the same command to resume"


class GenerateStopped(DscError):
    """The endpoint kept failing, or nothing new came of it: the run stops with what it has, resumable."""


@dataclass
class Summary:
    """What a run did: records in the output, drops by reason, requests sent, failed and reused from the journal."""

    output: Path
    kept: int
    target: int
    resumed: int
    dropped: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    reused: int = 0
    calls: int = 0


def examples_for(spec: GenerateSpec, request: int) -> list[Task]:
    """The seed tasks request `request` shows the model (the same on every run)."""
    return random.Random(f"{spec.seed}:{request}").sample(spec.seed_tasks, spec.examples_per_request)


def prompt_for(spec: GenerateSpec, request: int) -> str:
    """Request `request`'s prompt: the template rendered with its examples, then Alpaca's numbered list."""
    examples = examples_for(spec, request)
    preamble = template(spec.prompt.text).render(examples=[asdict(t) for t in examples], num_examples=len(examples))
    return encode_prompt(preamble, examples)


def novelty_index(spec: GenerateSpec) -> Novelty:
    """An empty index of the spec's kind."""
    n = spec.novelty
    return RougeNovelty(n.threshold, n.top) if n.similarity == ROUGE_L else MinHashNovelty(n.near, n.top)


class _Pool:
    """Daemon threads that send prompts; results come back on a queue as (request, Completion | exception)."""

    def __init__(self, client: Client, workers: int) -> None:
        self.client = client
        self.jobs: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self.results: queue.Queue[tuple[int, Completion | Exception]] = queue.Queue()
        self.workers = workers
        for _ in range(workers):
            threading.Thread(target=self._work, daemon=True).start()

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            request, prompt = job
            try:
                result: Completion | Exception = self.client.complete(prompt)
            except Exception as exc:  # noqa: BLE001 - handed to the main thread, which decides
                result = exc
            self.results.put((request, result))

    def close(self) -> None:
        for _ in range(self.workers):
            self.jobs.put(None)


def _api_key(spec: GenerateSpec) -> str | None:
    key = os.environ.get(spec.api_key_env)
    if spec.api_key_required and not key:
        message = f"generate.api_key_env: the environment variable {spec.api_key_env} is not set"
        raise SpecError(Problem(message, Location(str(spec.path))))
    return key or None


class _Run:
    def __init__(self, spec: GenerateSpec, state: journal.State, writer: journal.Writer, bar: tqdm) -> None:
        self.spec = spec
        self.writer = writer
        self.bar = bar
        self.kept = len(state.kept)
        self.dropped = dict(state.dropped)
        self.failed_in_a_row = 0
        self.processed = self.kept_here = 0
        """Requests processed, and records kept, by this run (the rate new requests are sent at)."""
        self.quiet = 0
        """Requests processed in a row that kept nothing; `quiet_drops` says why."""
        self.quiet_drops: dict[str, int] = {}
        self.answers = 0
        """Answers received since the last record was kept."""
        self.last_kept = time.monotonic()
        self.novelty = novelty_index(spec)
        self.novelty.add([t.instruction for t in spec.seed_tasks] + [r["instruction"] for r in state.kept])

    def _drop(self, counts: dict[str, int], reason: str, n: int = 1) -> None:
        if n:
            counts[reason] = counts.get(reason, 0) + n
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def where(self) -> str:
        return f"{self.kept} of {self.spec.num_instructions} records are in {self.spec.output}"

    def rate(self) -> float | None:
        """Records kept per processed request in this run, once there is something to go by."""
        return self.kept_here / self.processed if self.processed and self.kept_here else None

    def deadline(self) -> float | None:
        """When (time.monotonic) the run stops for want of a new record."""
        return None if self.spec.stall.seconds is None else self.last_kept + self.spec.stall.seconds

    def stalled(self, unanswered: int) -> GenerateStopped:
        """The stop for `stall.seconds` without a new record, with what happened meanwhile."""
        seconds = self.spec.stall.seconds
        dropped = f", {self._reasons(self.quiet_drops)} dropped" if self.quiet_drops else ""
        return GenerateStopped(
            f"no new record in {seconds:g} s ({self.answers} answers came back{dropped}; {unanswered} requests still "
            f"unanswered from {self.spec.base_url}); {self.where()}; {RESUME} (generate.stall.seconds sets the limit)"
        )

    def _quiet(self, kept: int, counts: dict[str, int]) -> None:
        """Count a processed request and what it kept; stop after `stall.requests` in a row that kept nothing."""
        self.processed += 1
        self.kept_here += kept
        if kept:
            self.quiet, self.quiet_drops, self.answers, self.last_kept = 0, {}, 0, time.monotonic()
            return
        self.quiet += 1
        for reason, n in counts.items():
            self.quiet_drops[reason] = self.quiet_drops.get(reason, 0) + n
        limit = self.spec.stall.requests
        if limit is not None and self.quiet >= limit and self.kept < self.spec.num_instructions:
            dropped = f": {self._reasons(self.quiet_drops)} dropped" if self.quiet_drops else ""
            raise GenerateStopped(
                f"no new record in the last {self.quiet} requests{dropped} (the endpoint's answers are all alike, or like "
                f"what is kept); {self.where()}; {RESUME} (generate.stall.requests sets the limit)"
            )

    def process(self, request: int, start: int, entry: dict[str, Any]) -> tuple[int, int]:
        """Turn one journaled response into records from candidate `start` on; return where processing goes on."""
        spec = self.spec
        counts: dict[str, int] = {}
        if "error" in entry:
            self.failed_in_a_row += 1
            self.writer.done(request, (request + 1, 0), 0, counts, failed=True)
            if self.failed_in_a_row >= FAILED_IN_A_ROW * spec.requests_per_batch:
                raise GenerateStopped(
                    f"{self.failed_in_a_row} requests in a row failed (the last: {entry['error']}); {self.where()}; {RESUME}"
                )
            self._quiet(0, {})
            return request + 1, 0
        self.failed_in_a_row = 0
        parsed = parse_completion(entry["text"], entry["finish_reason"], spec.examples_per_request, echoed_header=spec.api == "chat")
        if start == 0:
            self._drop(counts, MALFORMED, parsed.malformed)
            self._drop(counts, TRUNCATED, parsed.truncated)
        tasks = parsed.tasks[start:]
        reasons = [spec.filters.reject(t.instruction) for t in tasks]
        survivors = [t.instruction for t, r in zip(tasks, reasons, strict=True) if r is None]
        verdicts = iter(self.novelty.select(survivors, room=spec.num_instructions - self.kept))
        kept_here = 0
        next_at = (request + 1, 0)
        for offset, (task, reason) in enumerate(zip(tasks, reasons, strict=True)):
            if self.kept >= spec.num_instructions:
                next_at = (request, start + offset)
                break
            if reason is not None:
                self._drop(counts, reason)
                continue
            verdict = next(verdicts)
            assert verdict is not None  # select judges until the room is used up, and the loop stops there
            if not verdict.novel:
                self._drop(counts, TOO_SIMILAR)
                continue
            similar = [{"instruction": text, "score": score} for text, score in verdict.similar]
            record: dict[str, Any] = {**asdict(task), "most_similar_instructions": similar}
            if verdict.average is not None:
                record["avg_similarity_score"] = verdict.average
            record.update(request=request, candidate=start + offset)
            self.writer.record(record)
            self.kept += 1
            kept_here += 1
        self.writer.done(request, next_at, kept_here, counts, failed=False)
        self.bar.update(kept_here)
        self.bar.set_postfix_str(self.postfix(), refresh=False)
        self._quiet(kept_here, counts)
        return next_at

    @staticmethod
    def _reasons(counts: dict[str, int]) -> str:
        return ", ".join(f"{r} {n}" for r, n in sorted(counts.items(), key=lambda x: -x[1]))

    def postfix(self) -> str:
        dropped = sum(self.dropped.values())
        return f"dropped {dropped}" + (f" ({self._reasons(self.dropped)})" if self.dropped else "")


def _receive(pool: _Pool, writer: journal.Writer, summary: Summary, bar: tqdm, deadline: float | None) -> tuple[int, dict[str, Any]]:
    """Wait for the next answer (until `deadline`, else queue.Empty) and journal it; a failed request is reported, an
    endpoint error ends the run."""
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    k, result = pool.results.get(timeout=wait)
    if isinstance(result, Completion):
        entry: dict[str, Any] = {"request": k, "text": result.text, "finish_reason": result.finish_reason}
        entry.update(max_tokens=result.max_tokens, calls=result.calls)
        summary.calls += result.calls
    elif isinstance(result, RequestFailed):
        entry = {"request": k, "error": str(result)}
        summary.failed += 1
        bar.write(f"request {k} failed: {result}")
    else:
        raise result
    writer.response(entry)
    return k, entry


def generate(spec: GenerateSpec, progress: bool = True) -> Summary:
    """Run (or resume) the spec's generation until its output holds `num_instructions` records."""
    settings = spec.settings()
    journal.check_writable(spec.output)
    state = journal.load(spec.output, settings)
    fresh = not journal.journal_path(spec.output).exists()
    client = Client(spec, _api_key(spec), max_tokens=state.max_tokens)
    writer = journal.Writer(spec.output, settings, fresh)
    target = spec.num_instructions
    bar = tqdm(total=target, initial=min(len(state.kept), target), unit="instr", desc=f"generate {spec.name}", disable=not progress)
    run = _Run(spec, state, writer, bar)
    summary = Summary(output=spec.output, kept=run.kept, target=target, resumed=len(state.kept), reused=len(state.responses))
    pending = dict(state.responses)
    to_send = deque(k for k in range(state.next_request, state.issued) if k not in pending)
    fresh_id = state.issued
    in_flight: set[int] = set()
    batch = spec.requests_per_batch
    room = max(spec.concurrency, batch)
    pool = _Pool(client, room)
    at = (state.next_request, state.next_candidate)
    def more() -> bool:
        """Whether another batch should go out: always when the request processing waits for is not out (it must
        be), else while the unprocessed ones stay within `room` and, at the rate so far, fall short of the target."""
        if at[0] not in in_flight:
            return True
        unprocessed = len(in_flight) + len(pending)
        rate = run.rate()
        return unprocessed + batch <= room and (rate is None or unprocessed * rate < target - run.kept)

    run.last_kept = time.monotonic()  # the stall clock starts with the first request, not with loading the seeds
    try:
        while run.kept < target:
            if at[0] in pending:
                at = run.process(at[0], at[1], pending.pop(at[0]))
                continue
            while more():
                for _ in range(batch):
                    if to_send:
                        k = to_send.popleft()
                    else:
                        k, fresh_id = fresh_id, fresh_id + 1
                    in_flight.add(k)
                    pool.jobs.put((k, prompt_for(spec, k)))
                    summary.sent += 1
            try:
                k, entry = _receive(pool, writer, summary, bar, run.deadline())
            except queue.Empty:
                raise run.stalled(len(in_flight)) from None
            run.answers += 1
            in_flight.discard(k)
            pending[k] = entry
        # answers already paid for are journaled for a later run that asks for more, as long as they keep coming
        wait = spec.stall.seconds
        while in_flight:
            try:
                in_flight.discard(_receive(pool, writer, summary, bar, None if wait is None else time.monotonic() + wait)[0])
            except queue.Empty:
                break
    finally:
        pool.close()
        writer.close()
        bar.close()
    summary.kept = run.kept
    summary.dropped = run.dropped
    return summary
