"""`dsc.load`: a package, from a folder or a Hub dataset repo, as a `datasets` object plus its manifest.

From the Hub the manifest and the data are read at one commit (the revision is resolved first), so the manifest always
describes the data it comes with, even while someone publishes a new version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from dsc.builders.hub_http import apply_timeouts, describe
from dsc.builders.outputs import PACKAGE
from dsc.compiler.errors import DscError, Location, Problem

if TYPE_CHECKING:
    import datasets


class LoadedPackage(NamedTuple):
    """What `dsc.load` returns; unpacks as `dataset, manifest = dsc.load(...)`."""

    dataset: datasets.DatasetDict | datasets.Dataset
    manifest: dict[str, Any]


def _looks_local(given: str) -> bool:
    return given.startswith((".", "/", "~")) or Path(given).expanduser().exists() or given.count("/") != 1


def load(path_or_repo_id: str | Path, split: str | None = None, *, revision: str | None = None) -> LoadedPackage:
    """Load a dsc package: a local folder (`build/alpaca`) or a Hub dataset repo id (`user/alpaca`).

    `split` picks one split (`"train"`, `"validation"`) and returns a `Dataset`; without it a `DatasetDict`. `revision`
    (Hub only) is a branch, tag or commit. Hub reads use huggingface_hub's token and HF_ENDPOINT, and time out after
    DSC_HUB_TIMEOUT seconds (see `dsc.builders.hub_http`).
    Raises `dsc.compiler.errors.DscError` (one line) when the folder or repo holds no dsc package or the Hub fails.
    """
    import datasets

    given = str(path_or_repo_id)
    if _looks_local(given):
        folder = Path(given).expanduser()
        if not PACKAGE.owns(folder):
            raise DscError(
                Problem("not a dsc package (no readable dsc manifest.json); build one with `dsc build`", Location(given))
            )
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return LoadedPackage(datasets.load_dataset(str(folder), split=split), manifest)

    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    apply_timeouts()
    step = "reading the repo's info"
    try:
        commit = HfApi().dataset_info(given, revision=revision).sha
        step = "downloading manifest.json"
        manifest_file = hf_hub_download(given, "manifest.json", repo_type="dataset", revision=commit)
        manifest = json.loads(Path(manifest_file).read_text(encoding="utf-8"))
        step = "loading the data"
        dataset = datasets.load_dataset(given, split=split, revision=commit)
    except RepositoryNotFoundError:
        raise DscError(
            Problem(
                "no such package folder here, and no Hub dataset repo by that id (or it is private)", Location(given)
            )
        ) from None
    except EntryNotFoundError:
        raise DscError(Problem("not a dsc package (no manifest.json in the repo)", Location(given))) from None
    except Exception as exc:  # noqa: BLE001 - network, timeouts, HTTP errors, a broken repo: one line, never a traceback
        raise DscError(Problem(describe(exc, constants.ENDPOINT, step), Location(given))) from None
    return LoadedPackage(dataset, manifest)
