"""Talking to the Hub without hanging: a timeout on every request, and any failure as one line.

huggingface_hub's shared httpx client has no timeout (`timeout=None`), and most `HfApi` calls pass none, so a Hub that
accepts the connection and never answers blocks forever. dsc adds a request hook to that client (whatever factory made
it) that fills every missing timeout with `DSC_HUB_TIMEOUT` seconds (default 60); requests that carry their own keep
it (downloads use huggingface_hub's HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT, 10 s each by default).
"""

from __future__ import annotations

from typing import Any

from dsc.compiler.environment import positive_number

DEFAULT_TIMEOUT = 60.0
TIMEOUT_ENV = "DSC_HUB_TIMEOUT"


def hub_timeout() -> float:
    """Seconds a Hub request may wait (to connect, and for each read or write) before it fails: `DSC_HUB_TIMEOUT`."""
    return positive_number(TIMEOUT_ENV, DEFAULT_TIMEOUT)


class _FillTimeouts:
    """A request hook that gives every unset timeout (connect, read, write, pool) `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, request: Any) -> None:
        current = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            key: self.seconds if current.get(key) is None else current[key] for key in ("connect", "read", "write", "pool")
        }


def apply_timeouts() -> float:
    """Make every request of huggingface_hub's shared client time out after `hub_timeout()` seconds; returns them.

    Called before each publish or Hub load, so a client made anew (after `set_client_factory`, a fork) gets it too."""
    from huggingface_hub import get_session

    seconds = hub_timeout()
    hooks = get_session().event_hooks["request"]
    hooks[:] = [hook for hook in hooks if not isinstance(hook, _FillTimeouts)] + [_FillTimeouts(seconds)]
    return seconds


def describe(exc: BaseException, endpoint: str, doing: str, token: str | None = None) -> str:
    """One line for a failed Hub call (network, timeout, HTTP status, offline mode), with the token masked."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    root: BaseException = exc
    while root.__cause__ is not None and not isinstance(root, (httpx2.TransportError, HfHubHTTPError)):
        root = root.__cause__
    if isinstance(root, OfflineModeIsEnabled):
        text = f"offline mode is on (HF_HUB_OFFLINE=1) and {doing} needs the Hub; unset it"
    elif isinstance(root, httpx2.TimeoutException):
        text = (
            f"the Hub at {endpoint} did not answer within {hub_timeout():g} s while {doing} "
            f"({type(root).__name__}); try again later, or set {TIMEOUT_ENV} to wait longer"
        )
    elif isinstance(root, httpx2.TransportError):
        text = f"cannot reach the Hub at {endpoint} while {doing}: {type(root).__name__}: {root}"
    elif isinstance(root, HfHubHTTPError) and root.response is not None:
        said = root.server_message or str(root).splitlines()[0]
        text = f"the Hub at {endpoint} refused {doing}: HTTP {root.response.status_code}: {said}"
    else:
        text = f"{doing} failed: {type(root).__name__}: {root}"
    text = " ".join(text.split())
    return text.replace(token, "***") if token else text
