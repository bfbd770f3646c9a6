"""A small OpenAI-compatible client (stdlib HTTP): one prompt in, one completion out, with Alpaca's retry rules.

- A context-length error (HTTP 400, code `context_length_exceeded` or a message about the maximum context length, or
  Alpaca's "Please reduce your prompt") retries at once with max_tokens cut to 80%, as Alpaca's `openai_completion`
  does; this is not counted as a retry. The cut is remembered: every later request starts from the shrunk value, so
  only the first request that meets the limit pays for the calls that find it.
- 429, 408, 409, any 5xx, a dropped connection, a timeout or an unreadable body: exponential backoff with jitter
  (`backoff` x 2^attempt seconds, at most 60, or the server's Retry-After), up to `retries` retries; then the request
  fails with `RequestFailed`, which the run reports and moves past.
- 401, 403 and 404 mean the endpoint, key or model is wrong for every request alike: `EndpointError` ends the run. So
  does a connection that cannot be made (refused, unknown host, no route, connect timeout) before the endpoint has
  ever answered: a wrong URL or a server that is not running is reported at once, not after minutes of backoff.
  Once the endpoint has answered, a failed connection is a dropped one (a restart) and is retried as above.

Connecting and reading have their own timeouts (`connect_timeout`, short: a host that is up accepts at once;
`timeout`, long: a model writes its whole answer before the first byte comes back).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.parse
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


class _ConnectFailed(Exception):
    """No connection could be made (refused, unknown host, unreachable, connect timeout)."""


class Client:
    """Sends prompts to `{base_url}/completions` or `{base_url}/chat/completions`; safe to share between threads."""

    def __init__(
        self, spec: GenerateSpec, api_key: str | None, sleep: Callable[[float], None] = time.sleep, max_tokens: int | None = None
    ) -> None:
        """`max_tokens`: where an earlier run's context-length cuts left it (never above the spec's)."""
        self.spec = spec
        self.url = spec.base_url + ("/chat/completions" if spec.api == "chat" else "/completions")
        self._target = urllib.parse.urlsplit(self.url)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.sleep = sleep
        self.max_tokens = min(spec.max_tokens, max_tokens or spec.max_tokens)
        self.reached = False
        """Whether the endpoint has ever answered: until it has, a failed connection ends the run."""
        self._lock = threading.Lock()

    def _shrink(self, tried: int) -> int:
        """Cut max_tokens to 80% of what was just refused, for this request and every later one."""
        with self._lock:
            self.max_tokens = min(self.max_tokens, int(tried * SHRINK))
            return self.max_tokens

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
        """(status, body, Retry-After) of one POST; _ConnectFailed when no connection was made."""
        target = self._target
        kind = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        connection = kind(target.hostname or "", target.port, timeout=self.spec.connect_timeout)
        try:
            try:
                connection.connect()
            except (OSError, http.client.HTTPException) as exc:
                raise _ConnectFailed(_reason(exc)) from None
            assert connection.sock is not None
            connection.sock.settimeout(self.spec.timeout)
            path = target.path + (f"?{target.query}" if target.query else "")
            connection.request("POST", path, body=json.dumps(body).encode(), headers=self.headers)
            response = connection.getresponse()
            return response.status, response.read(), response.getheader("Retry-After")
        finally:
            connection.close()

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
        max_tokens = self.max_tokens
        attempt = calls = 0
        while True:
            calls += 1
            retry_after = None
            try:
                status, body, retry_after = self._post(self.payload(prompt, max_tokens))
            except _ConnectFailed as exc:
                if not self.reached:
                    raise EndpointError(f"{self.url}: cannot connect: {exc} (is the server running, and is base_url right?)") from None
                problem = f"connection failed: {exc}"
            except (http.client.HTTPException, OSError) as exc:
                problem = f"connection dropped: {_reason(exc)}"
            else:
                self.reached = True
                if status == 200:
                    try:
                        text, finish = self._read(body)
                        return Completion(text=text, finish_reason=finish, max_tokens=max_tokens, calls=calls)
                    except (ValueError, KeyError, IndexError, TypeError):
                        problem = f"not a completion: {body[:120].decode('utf-8', 'replace')!r}"
                elif is_context_error(status, body):
                    if int(max_tokens * SHRINK) < 1:
                        raise RequestFailed(f"prompt too long for the model's context even at max_tokens {max_tokens}")
                    max_tokens = self._shrink(max_tokens)
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


def _reason(exc: BaseException) -> str:
    """A short reason for a socket-level failure ("timed out", "[Errno 111] Connection refused", ...)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
