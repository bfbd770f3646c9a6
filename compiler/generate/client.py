"""A small OpenAI-compatible client (stdlib HTTP): one prompt in, one completion out, with Alpaca's retry rules.

- A context-length error (HTTP 400, code `context_length_exceeded` or a message about the maximum context length, or
  Alpaca's "Please reduce your prompt") retries at once with max_tokens cut to 80%, as Alpaca's `openai_completion`
  does; this is not counted as a retry.
- 429, 408, 409, any 5xx, a dropped connection, a timeout or an unreadable body: exponential backoff with jitter
  (`backoff` x 2^attempt seconds, at most 60, or the server's Retry-After), up to `retries` retries; then the request
  fails with `RequestFailed`, which the run reports and moves past.
- 401, 403 and 404 mean the endpoint, key or model is wrong for every request alike: `EndpointError` ends the run.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dsc.compiler.errors import DscError
from dsc.compiler.generate.spec import GenerateSpec

SHRINK = 0.8
MAX_DELAY = 60.0
TRANSIENT = {408, 409, 429}
FATAL = {401: "the API key was refused", 403: "the API key may not use this model", 404: "no such endpoint or model"}
CONTEXT_MARKERS = ("maximum context length", "please reduce your prompt", "context_length_exceeded")


class RequestFailed(Exception):
    """One request could not be completed (after its retries): reported, and the run goes on."""


class EndpointError(DscError):
    """The endpoint refuses every request (wrong URL, key or model): the run stops, exit 1, resumable once fixed."""


@dataclass(frozen=True)
class Completion:
    """What came back: the text, why it ended, the max_tokens that worked, and how many HTTP calls it took."""

    text: str
    finish_reason: str | None
    max_tokens: int
    calls: int


def _error_text(body: bytes) -> tuple[str, str]:
    """(code, message) of an OpenAI-style error body, or ("", the body's start)."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return "", body[:200].decode("utf-8", "replace")
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", str(error)


def is_context_error(status: int, body: bytes) -> bool:
    """Whether a 400 says the prompt plus max_tokens does not fit the model's context."""
    if status != 400:
        return False
    code, message = _error_text(body)
    text = f"{code} {message}".lower()
    return any(marker in text for marker in CONTEXT_MARKERS)


class Client:
    """Sends prompts to `{base_url}/completions` or `{base_url}/chat/completions`; safe to share between threads."""

    def __init__(self, spec: GenerateSpec, api_key: str | None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec = spec
        self.url = spec.base_url + ("/chat/completions" if spec.api == "chat" else "/completions")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.sleep = sleep

    def payload(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        """The request body: the spec's sampling settings, then `extra_body` on top."""
        spec = self.spec
        body: dict[str, Any] = {"model": spec.model, "max_tokens": max_tokens, "temperature": spec.temperature, "top_p": spec.top_p, "n": 1}
        if spec.stop:
            body["stop"] = list(spec.stop)
        if spec.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return {**body, **spec.extra_body}

    def _post(self, body: dict[str, Any]) -> tuple[int, bytes, str | None]:
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.spec.timeout) as response:
                return response.status, response.read(), None
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(), exc.headers.get("Retry-After")

    def _read(self, body: bytes) -> tuple[str, str | None]:
        """(text, finish_reason) of a 200 response; ValueError when it is not a completion."""
        data = json.loads(body)
        choice = data["choices"][0]
        text = choice["message"]["content"] if self.spec.api == "chat" else choice["text"]
        if not isinstance(text, str):
            raise ValueError("the completion has no text")
        return text, choice.get("finish_reason")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(MAX_DELAY, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(MAX_DELAY, self.spec.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def complete(self, prompt: str) -> Completion:
        """One completion of `prompt`, retried per the rules above."""
        max_tokens = self.spec.max_tokens
        attempt = calls = 0
        while True:
            calls += 1
            retry_after = None
            try:
                status, body, retry_after = self._post(self.payload(prompt, max_tokens))
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                status, problem = 0, f"connection failed: {getattr(exc, 'reason', None) or exc}"
            else:
                if status == 200:
                    try:
                        text, finish = self._read(body)
                        return Completion(text=text, finish_reason=finish, max_tokens=max_tokens, calls=calls)
                    except (ValueError, KeyError, IndexError, TypeError):
                        problem = f"not a completion: {body[:120].decode('utf-8', 'replace')!r}"
                elif is_context_error(status, body):
                    shrunk = int(max_tokens * SHRINK)
                    if shrunk < 1:
                        raise RequestFailed(f"prompt too long for the model's context even at max_tokens {max_tokens}")
                    max_tokens = shrunk
                    continue
                else:
                    code, message = _error_text(body)
                    problem = f"HTTP {status}{f' {code}' if code else ''}: {message}".rstrip(": ")
                    if status in FATAL:
                        raise EndpointError(f"{self.url}: {problem} ({FATAL[status]})")
                    if status not in TRANSIENT and status < 500:
                        raise RequestFailed(problem)
            attempt += 1
            if attempt > self.spec.retries:
                raise RequestFailed(f"{problem} (gave up after {self.spec.retries} retries)")
            self.sleep(self._delay(attempt, retry_after))
