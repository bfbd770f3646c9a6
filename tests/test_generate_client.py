"""The OpenAI-compatible client against a loopback server: request shapes, Alpaca's context-length rule, backoff on
429 and 5xx, failures that are reported and failures that end the run (a server that is not there among them, at once), read
timeouts apart from connect failures, and a context-length cut remembered."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA
from dsc.compiler.generate.client import Client, EndpointError, RequestFailed
from dsc.compiler.generate.spec import GenerateSpec, load_generate_spec
from openai_server import ContextLimit, OpenAIServer, Reply, context_error, error, hang, ok, scripted

SEEDS = DATA / "alpaca_seed_tasks.jsonl"


def make_spec(tmp_path: Path, url: str, **generate: object) -> GenerateSpec:
    settings = {"seeds": SEEDS, "model": "tiny", "base_url": url, "backoff": 0.01, **generate}
    lines = ["name: t\ngenerate:\n", *(f"  {k}: {v}\n" for k, v in settings.items())]
    path = tmp_path / "gen.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return load_generate_spec(path)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_completions_request_carries_the_spec_settings(tmp_path: Path):
    with OpenAIServer(scripted(lambda call: ok(call, " done"))) as server:
        spec = make_spec(tmp_path, server.url, temperature=0.7, top_p=0.9, max_tokens=64, extra_body="{logit_bias: {'50256': -100}}")
        got = Client(spec, api_key="sk-test").complete("List:")
        body = server.calls[0].body
    assert (got.text, got.finish_reason, got.max_tokens, got.calls) == (" done", "stop", 64, 1)
    assert server.calls[0].path == "/v1/completions"
    assert body == {
        "model": "tiny", "prompt": "List:", "max_tokens": 64, "temperature": 0.7, "top_p": 0.9, "n": 1,
        "stop": ["\n20", "20."], "logit_bias": {"50256": -100},
    }  # fmt: skip
    assert server.calls[0].headers["Authorization"] == "Bearer sk-test"


def test_chat_endpoint_sends_messages_and_reads_message_content(tmp_path: Path):
    with OpenAIServer(scripted(lambda call: ok(call, "4. Instruction: hi", "length"))) as server:
        spec = make_spec(tmp_path, server.url, api="chat")
        got = Client(spec, api_key=None).complete("List:")
    assert server.calls[0].path == "/v1/chat/completions"
    assert server.calls[0].body["messages"] == [{"role": "user", "content": "List:"}]
    assert "Authorization" not in server.calls[0].headers
    assert (got.text, got.finish_reason) == ("4. Instruction: hi", "length")


def test_context_length_error_shrinks_max_tokens_to_80_percent_and_retries(tmp_path: Path):
    with OpenAIServer(scripted(context_error, context_error, lambda call: ok(call, " fits"))) as server:
        sleeps = Sleeps()
        got = Client(make_spec(tmp_path, server.url), api_key=None, sleep=sleeps).complete("List:")
    assert [c.body["max_tokens"] for c in server.calls] == [3072, 2457, 1965]  # int(3072 * 0.8), int(2457 * 0.8)
    assert (got.text, got.max_tokens, got.calls) == (" fits", 1965, 3)
    assert sleeps == []  # a shrink is retried at once, and is not one of the retries


def test_vllm_style_context_message_is_recognized(tmp_path: Path):
    vllm = error(400, "This model's maximum context length is 2048 tokens. However, you requested 3100 tokens.", kind="BadRequestError")
    with OpenAIServer(scripted(vllm, lambda call: ok(call, " ok"))) as server:
        got = Client(make_spec(tmp_path, server.url, max_tokens=100), api_key=None).complete("x")
    assert got.max_tokens == 80


def test_429_and_5xx_back_off_then_succeed_honouring_retry_after(tmp_path: Path):
    replies = scripted(
        error(429, "Rate limit reached", code="rate_limit_exceeded", kind="requests", Retry_After="0.05"),
        error(503, "overloaded", kind="server_error"),
        error(502, "bad gateway", kind="server_error"),
        lambda call: ok(call, " finally"),
    )
    with OpenAIServer(replies) as server:
        sleeps = Sleeps()
        got = Client(make_spec(tmp_path, server.url, retries=3, backoff=1.0), api_key=None, sleep=sleeps).complete("x")
    assert got.text == " finally" and got.calls == 4
    assert sleeps[0] == 0.05  # Retry-After wins over the schedule
    assert 1.0 <= sleeps[1] <= 2.0 and 2.0 <= sleeps[2] <= 4.0  # backoff x 2^(attempt-1), jittered down to half


def test_a_request_that_keeps_failing_is_reported_after_its_retries(tmp_path: Path):
    with OpenAIServer(scripted(*[error(500, "boom", kind="server_error")] * 10)) as server:
        sleeps = Sleeps()
        with pytest.raises(RequestFailed, match=r"HTTP 500: boom \(gave up after 2 retries\)"):
            Client(make_spec(tmp_path, server.url, retries=2), api_key=None, sleep=sleeps).complete("x")
    assert len(server.calls) == 3 and len(sleeps) == 2


def test_a_body_that_is_not_a_completion_is_retried(tmp_path: Path):
    with OpenAIServer(scripted(Reply(body={"choices": []}), lambda call: ok(call, " ok"))) as server:
        got = Client(make_spec(tmp_path, server.url), api_key=None, sleep=Sleeps()).complete("x")
    assert got.calls == 2


def test_other_4xx_fail_the_request_and_auth_errors_end_the_run(tmp_path: Path):
    with OpenAIServer(scripted(error(400, "content filtered", code="content_filter"), error(401, "Incorrect API key provided"))) as server:
        client = Client(make_spec(tmp_path, server.url), api_key="bad", sleep=Sleeps())
        with pytest.raises(RequestFailed, match="HTTP 400 content_filter: content filtered"):
            client.complete("x")
        with pytest.raises(EndpointError, match=r"HTTP 401: Incorrect API key provided \(the API key was refused\)"):
            client.complete("x")
    assert len(server.calls) == 2


def test_an_endpoint_never_reached_ends_the_run_at_once(tmp_path: Path):
    with OpenAIServer(scripted()) as server:
        url = server.url
    sleeps = Sleeps()
    for base in (url, "http://no-such-host.invalid/v1"):
        with pytest.raises(EndpointError, match=r"cannot connect: .*\(is the server running, and is base_url right\?\)"):
            Client(make_spec(tmp_path, base, retries=5), api_key=None, sleep=sleeps).complete("x")
    assert sleeps == []  # no backoff for a server that is not there


def test_a_connection_lost_after_the_endpoint_answered_is_retried_then_reported(tmp_path: Path):
    with OpenAIServer(scripted(lambda call: ok(call, " one"))) as server:
        sleeps = Sleeps()
        client = Client(make_spec(tmp_path, server.url, retries=2), api_key=None, sleep=sleeps)
        assert client.complete("x").text == " one"
    with pytest.raises(RequestFailed, match=r"connection failed: .*Connection refused \(gave up after 2 retries\)"):
        client.complete("x")  # the server went away: a restart, maybe, so it is retried
    assert len(sleeps) == 2


def test_a_read_timeout_is_retried_as_a_dropped_answer(tmp_path: Path):
    with OpenAIServer(hang) as server:
        sleeps = Sleeps()
        client = Client(make_spec(tmp_path, server.url, retries=1, timeout=0.3), api_key=None, sleep=sleeps)
        with pytest.raises(RequestFailed, match=r"connection dropped: timed out \(gave up after 1 retries\)"):
            client.complete("x")
    assert len(server.calls) == 2 and len(sleeps) == 1


def test_a_shrunk_max_tokens_is_where_later_requests_start(tmp_path: Path):
    with OpenAIServer(ContextLimit(lambda call: ok(call, " fits"), room=2000)) as server:
        client = Client(make_spec(tmp_path, server.url), api_key=None)
        assert client.complete("a").calls == 3
        assert client.complete("b").calls == 1
        resumed = Client(make_spec(tmp_path, server.url), api_key=None, max_tokens=client.max_tokens)
        assert resumed.complete("c").calls == 1
    assert [c.body["max_tokens"] for c in server.calls] == [3072, 2457, 1965, 1965, 1965]
