"""Publishing a package folder to a Hugging Face Hub dataset repo, in one commit.

The token is huggingface_hub's own (HF_TOKEN, else the saved `hf auth login`), never the spec's; it is handed to the
client and nothing else, and any message shown to the user is scrubbed of it. HF_ENDPOINT and HF_HUB_OFFLINE are
honoured through huggingface_hub's constants. Every request times out (`dsc.builders.hub_http`, DSC_HUB_TIMEOUT).
Every failure a user can meet (offline, no token, token rejected, a repo in someone else's namespace, the network, a
Hub that stops answering, a package that differs from its manifest) becomes one `DscError` line, raised before or
instead of the commit; the local package is only ever read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsc.builders.hub_http import apply_timeouts, describe
from dsc.builders.verify import read_package
from dsc.compiler.errors import DscError

STALE_PATTERNS = ["data/**"]
"""Remote files that a publish removes when the package no longer has them: old shards would otherwise be read as
part of the dataset. Anything else a user added to the repo (a LICENSE, notebooks) is left alone."""


class PublishError(DscError):
    """Publishing failed; nothing was committed and the local package is as it was."""

    exit_code = 1


@dataclass
class Published:
    """Where a package went and whether that made a commit."""

    repo_id: str
    revision: str
    url: str
    commit: str
    changed: bool
    private: bool
    files: int


def _token_source() -> str:
    return "HF_TOKEN" if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") else "the saved login"


class _Scrub:
    """Turns any exception into one `PublishError` line with the token masked."""

    def __init__(self, token: str | None, endpoint: str) -> None:
        self.token = token
        self.endpoint = endpoint

    def error(self, exc: BaseException, doing: str) -> PublishError:
        return PublishError(describe(exc, self.endpoint, doing, self.token))


def _commit_message(manifest: dict[str, Any]) -> str:
    kept = manifest.get("counts", {}).get("kept", {})
    rows = ", ".join(f"{name} {n}" for name, n in kept.items())
    return f"dsc publish {manifest.get('name')} (fingerprint {manifest.get('fingerprint')}; {rows})"


def publish(
    package: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
) -> Published:
    """Upload a package folder (card, shards, manifest, launcher files) to a dataset repo in one commit.

    Creates the repo when needed (private when asked) and the branch when `revision` names a new one. A package the
    revision already holds makes no commit (`Published.changed` is False). Raises `PublishError` with one line.
    """
    folder = Path(package)
    manifest = read_package(folder)

    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RevisionNotFoundError
    from huggingface_hub.utils import validate_repo_id

    endpoint = constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:
        raise PublishError("offline mode is on (HF_HUB_OFFLINE=1): publishing needs the Hub; unset it to publish")
    token = get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    scrub = _Scrub(token, endpoint)
    apply_timeouts()
    api = HfApi(endpoint=endpoint, token=token)

    try:
        me = api.whoami()
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code == 401:
            raise PublishError(
                f"the Hub at {endpoint} rejected the token from {_token_source()}; "
                "check it or log in again with `hf auth login`"
            ) from None
        raise scrub.error(exc, "checking the token") from None
    except Exception as exc:  # noqa: BLE001 - network and client failures: one line, never a traceback
        raise scrub.error(exc, "checking the token") from None

    if "/" not in repo_id:
        repo_id = f"{me['name']}/{repo_id}"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishError(f"--repo {repo_id!r} is not a valid repo id: {str(exc).splitlines()[0]}") from None
    namespace = repo_id.split("/", 1)[0]
    mine = [me["name"], *(org["name"] for org in me.get("orgs", []))]
    if namespace not in mine:
        raise PublishError(
            f"{repo_id} is in the namespace '{namespace}', which the token's user '{me['name']}' cannot write to "
            f"(it can write to: {', '.join(mine)})"
        )

    branch = revision or constants.DEFAULT_REVISION
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.repo_info(repo_id, repo_type="dataset")
        if private and not info.private:
            raise PublishError(
                f"{repo_id} already exists and is public; make it private on the Hub first, "
                "or publish without --private"
            )
        try:
            before = api.repo_info(repo_id, repo_type="dataset", revision=branch).sha
        except RevisionNotFoundError:
            api.create_branch(repo_id, branch=branch, repo_type="dataset", exist_ok=True)
            before = api.repo_info(repo_id, repo_type="dataset", revision=branch).sha
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(folder),
            revision=branch,
            commit_message=message or _commit_message(manifest),
            delete_patterns=STALE_PATTERNS,
            parent_commit=before,
        )
    except PublishError:
        raise
    except Exception as exc:  # noqa: BLE001 - HTTP, network and client failures: one line, never a traceback
        raise scrub.error(exc, f"publishing to {repo_id}") from None
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    url = f"{endpoint}/datasets/{repo_id}" + ("" if branch == constants.DEFAULT_REVISION else f"/tree/{branch}")
    return Published(repo_id, branch, url, commit.oid, commit.oid != before, bool(info.private), files)
