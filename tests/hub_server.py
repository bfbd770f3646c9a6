"""A loopback Hugging Face Hub: the part of the Hub's HTTP API that `huggingface_hub` and `datasets` use to publish a
dataset repo and read it back, served on 127.0.0.1 from memory.

Speaks: whoami-v2, repos/create, dataset info (optionally at a revision), validate-yaml, preupload, the NDJSON
commit, branch creation, the git-LFS batch API with basic PUT uploads and verify, tree listings, paths-info, and
resolve (GET/HEAD with Range). Repos have owners, privacy, branches and a commit history; tokens map to users with
organisations. `stall` (a regex of paths) makes it accept those requests and never answer, as a hung Hub does.
Files are told to upload `regular` (base64 inside the commit) unless the hub is started with `lfs=True`, when
Parquet files go through LFS as on huggingface.co. Xet storage is not spoken: a client that asks
for a Xet token gets a 501 that says so (run such clients with HF_HUB_DISABLE_XET=1, or keep `lfs=False`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors")


def loopback_env(hub_url: str, home: Path, token: str, **extra: str) -> dict[str, str]:
    """A clean Hugging Face environment pointed at a loopback hub ("" unsets a variable for huggingface_hub)."""
    return {
        "HF_ENDPOINT": hub_url,
        "HF_TOKEN": token,
        "HF_HOME": str(home / "hf"),
        "HF_DATASETS_CACHE": str(home / "datasets"),
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **extra,
    }


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_blob_sha1(self.data)

    def entry(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "path": path, "size": len(self.data), "oid": git_blob_sha1(self.data)}
        if self.lfs:
            out["lfs"] = {"oid": hashlib.sha256(self.data).hexdigest(), "size": len(self.data), "pointerSize": 134}
        return out


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, StoredFile]
    parent: str | None


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, list[Commit]] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def head(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.branches[revision][-1]
        for commits in self.branches.values():
            for commit in commits:
                if commit.oid == revision:
                    return commit
        return None

    def files(self, revision: str = "main") -> dict[str, bytes]:
        """The files at a revision, as bytes (for tests)."""
        head = self.head(revision)
        return {path: f.data for path, f in head.files.items()} if head else {}

    def commits(self, branch: str = "main") -> list[Commit]:
        return list(self.branches.get(branch, []))


@dataclass
class User:
    name: str
    token: str
    orgs: tuple[str, ...] = ()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class LoopbackHub:
    """A Hub on 127.0.0.1. Use as a context manager; `url` is what HF_ENDPOINT should be."""

    def __init__(self, lfs: bool = False) -> None:
        self.lfs = lfs
        self.users: dict[str, User] = {}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.stall: re.Pattern[str] | None = None
        """Requests whose path matches are accepted, read and never answered (a Hub that hangs), until the hub closes."""
        self._closing = threading.Event()
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def __enter__(self) -> LoopbackHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- state ------------------------------------------------------------------------------------------------------
    def add_user(self, name: str, token: str, orgs: tuple[str, ...] = ()) -> User:
        user = User(name, token, orgs)
        self.users[token] = user
        return user

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False) -> Repo:
        """Create a repo the way the Hub does: one initial commit holding a .gitattributes."""
        repo = Repo(repo_id, repo_type, private)
        attributes = StoredFile(b"*.parquet filter=lfs diff=lfs merge=lfs -text\n", lfs=False)
        first = Commit(
            _commit_oid(None, {".gitattributes": attributes}, "initial commit"),
            "initial commit",
            {".gitattributes": attributes},
            None,
        )
        repo.branches["main"] = [first]
        self.repos[(repo_type, repo_id)] = repo
        return repo

    # -- access -----------------------------------------------------------------------------------------------------
    def can_write(self, user: User | None, repo_id: str) -> bool:
        namespace = repo_id.split("/", 1)[0]
        return user is not None and (namespace == user.name or namespace in user.orgs)

    def readable(self, user: User | None, repo_type: str, repo_id: str) -> Repo:
        repo = self.repo(repo_id, repo_type)
        if repo is None or (repo.private and not self.can_write(user, repo_id)):
            raise HubError(404 if user else 401, "Repository not found", "RepoNotFound")
        return repo

    def writable(self, user: User | None, repo_type: str, repo_id: str) -> Repo:
        repo = self.readable(user, repo_type, repo_id)
        if not self.can_write(user, repo_id):
            raise HubError(403, f"You don't have write access to {repo_type}s/{repo_id}")
        return repo


def _commit_oid(parent: str | None, files: dict[str, StoredFile], message: str) -> str:
    digest = hashlib.sha1(f"{parent}\n{message}\n{time.time_ns()}".encode())
    for path in sorted(files):
        digest.update(f"{path}:{files[path].oid}\n".encode())
    return digest.hexdigest()


_REPO = r"(?P<type>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), name)
    for m, p, name in [
        ("GET", r"^/api/whoami-v2$", "whoami"),
        ("POST", r"^/api/repos/create$", "create"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml"),
        ("GET", rf"^/api/{_REPO}$", "info"),
        ("GET", rf"^/api/{_REPO}/revision/(?P<rev>[^/]+)$", "info"),
        ("POST", rf"^/api/{_REPO}/preupload/(?P<rev>[^/]+)$", "preupload"),
        ("POST", rf"^/api/{_REPO}/commit/(?P<rev>[^/]+)$", "commit"),
        ("POST", rf"^/api/{_REPO}/branch/(?P<rev>[^/]+)$", "branch"),
        ("GET", rf"^/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree"),
        ("POST", rf"^/api/{_REPO}/paths-info/(?P<rev>[^/]+)$", "paths_info"),
        ("GET", rf"^/api/{_REPO}/xet-write-token/(?P<rev>[^/]+)$", "xet"),
        ("GET", rf"^/api/{_REPO}/xet-read-token/(?P<rev>[^/]+)$", "xet"),
        ("POST", r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$", "lfs_batch"),
        ("PUT", r"^/lfs-store/(?P<oid>[0-9a-f]{64})$", "lfs_put"),
        ("POST", r"^/lfs-verify/(?P<oid>[0-9a-f]{64})$", "lfs_verify"),
        (
            "GET",
            r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
            "resolve",
        ),
        (
            "HEAD",
            r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
            "resolve",
        ),
    ]
]


class _Handler(BaseHTTPRequestHandler):
    hub: LoopbackHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the hub records requests itself
        return

    # -- plumbing ---------------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _user(self) -> User | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        user = self.hub.users.get(auth[len("Bearer ") :])
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        with self.hub.lock:
            self.hub.requests.append((self.command, self.path, status))

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body = self._body() if self.command in ("POST", "PUT") else b""
        if self.hub.stall is not None and self.hub.stall.search(url.path):
            with self.hub.lock:
                self.hub.requests.append((self.command, self.path, 0))
            self.hub._closing.wait()
            self.close_connection = True
            return
        try:
            for method, pattern, name in _ROUTES:
                match = pattern.match(url.path)
                if method == self.command and match:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    getattr(self, f"do_{name}")(params, parse_qs(url.query), body)
                    return
            raise HubError(404, f"no route for {self.command} {url.path}")
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head=self.command == "HEAD")

    do_GET = do_POST = do_PUT = do_HEAD = _dispatch  # noqa: N815 - http.server's naming

    @staticmethod
    def _repo_type(params: dict[str, str]) -> str:
        return {"datasets": "dataset", "spaces": "space", "models": "model"}.get(
            params.get("type") or "models", "model"
        )

    def _head_commit(self, repo: Repo, revision: str) -> Commit:
        head = repo.head(revision)
        if head is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return head

    # -- account and repos ------------------------------------------------------------------------------------------
    def do_whoami(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        user = self._user()
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        self._json(
            200,
            {
                "type": "user",
                "name": user.name,
                "fullname": user.name,
                "orgs": [{"type": "org", "name": org} for org in user.orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": "dsc-tests", "role": "write"}},
            },
        )

    def do_create(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        user = self._user()
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or (user.name if user else None)
        repo_id = f"{namespace}/{payload['name']}"
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        if not self.hub.can_write(user, repo_id):
            raise HubError(403, f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"')
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        with self.hub.lock:
            if self.hub.repo(repo_id, repo_type) is not None:
                self._json(
                    409,
                    {"error": f"You already created this {repo_type} repo", "url": f"{self.hub.url}/{prefix}{repo_id}"},
                )
                return
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            self.hub.create_repo(repo_id, repo_type, private)
        self._json(200, {"url": f"{self.hub.url}/{prefix}{repo_id}", "name": repo_id, "id": repo_id})

    def do_validate_yaml(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        import yaml

        content = json.loads(body)["content"]
        errors = []
        if content.startswith("---\n"):
            header = content[4:].split("\n---", 1)[0]
            try:
                if not isinstance(yaml.safe_load(header) or {}, dict):
                    errors.append({"message": "metadata is not a YAML mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def do_info(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo_type = self._repo_type(params)
        repo = self.hub.readable(self._user(), repo_type, params["repo"])
        head = self._head_commit(repo, params.get("rev", "main"))
        created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(repo.created))
        self._json(
            200,
            {
                "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": head.oid,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": created,
                "lastModified": created,
                "siblings": [
                    {
                        k: v
                        for k, v in {
                            "rfilename": p,
                            "size": len(f.data),
                            "blobId": git_blob_sha1(f.data),
                            "lfs": f.entry(p).get("lfs") and {"size": len(f.data), "sha256": f.oid, "pointerSize": 134},
                        }.items()
                        if v is not None
                    }
                    for p, f in sorted(head.files.items())
                ],
            },
        )

    def do_branch(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo_type = self._repo_type(params)
        with self.hub.lock:
            repo = self.hub.writable(self._user(), repo_type, params["repo"])
            branch = params["rev"]
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            repo.branches[branch] = [self._head_commit(repo, start)]
        self._json(200, {})

    # -- upload -----------------------------------------------------------------------------------------------------
    def do_preupload(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo_type = self._repo_type(params)
        repo = self.hub.writable(self._user(), repo_type, params["repo"])
        head = repo.head(params["rev"])
        out = []
        for f in json.loads(body)["files"]:
            lfs = self.hub.lfs and (f["path"].endswith(LFS_SUFFIXES) or f["size"] > 10 * 1024 * 1024)
            existing = head.files.get(f["path"]) if head else None
            entry = {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            if existing is not None and existing.lfs == lfs:
                entry["oid"] = existing.oid
            out.append(entry)
        self._json(200, {"files": out, "commitOid": head.oid if head else None})

    def do_lfs_batch(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo_type = self._repo_type(params) if params.get("type") else "model"
        self.hub.writable(self._user(), repo_type, params["repo"])
        payload = json.loads(body)
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs_objects:
                entry["actions"] = {
                    "upload": {"href": f"{self.hub.url}/lfs-store/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{self.hub.url}/lfs-verify/{obj['oid']}", "header": {}},
                }
            objects.append(entry)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def do_lfs_put(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != params["oid"]:
            raise HubError(400, "uploaded content does not match its sha256")
        with self.hub.lock:
            self.hub.lfs_objects[params["oid"]] = body
        self._send(200, b"")

    def do_lfs_verify(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        sent = json.loads(body)
        stored = self.hub.lfs_objects.get(params["oid"])
        if stored is None or len(stored) != sent["size"]:
            raise HubError(404, "object not found")
        self._json(200, {"success": True})

    def do_xet(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        raise HubError(501, "this hub does not speak Xet storage; set HF_HUB_DISABLE_XET=1")

    def do_commit(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo_type = self._repo_type(params)
        with self.hub.lock:
            repo = self.hub.writable(self._user(), repo_type, params["repo"])
            branch = params["rev"]
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.branches[branch][-1]
            files = dict(head.files)
            message = ""
            for line in body.splitlines():
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value["summary"]
                    parent = value.get("parentCommit")
                    if parent and parent != head.oid:
                        raise HubError(412, "A commit has happened since. Please refresh and try again.")
                elif key == "file":
                    files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    data = self.hub.lfs_objects.get(value["oid"])
                    if data is None or len(data) != value["size"]:
                        raise HubError(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                    files[value["path"]] = StoredFile(data, lfs=True)
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(folder)}
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            commit = Commit(_commit_oid(head.oid, files, message), message, files, head.oid)
            repo.branches[branch].append(commit)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub.url}/{prefix}{repo.repo_id}/commit/{commit.oid}",
                "pullRequestUrl": None,
            },
        )

    # -- download ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _listing(files: dict[str, StoredFile], folder: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        out: dict[str, dict[str, Any]] = {}
        for path, stored in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                sub = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    out.setdefault(
                        sub,
                        {"type": "directory", "path": sub, "size": 0, "oid": hashlib.sha1(sub.encode()).hexdigest()},
                    )
            if recursive or len(parts) == 1:
                out[path] = stored.entry(path)
        return list(out.values())

    def do_tree(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo = self.hub.readable(self._user(), self._repo_type(params), params["repo"])
        head = self._head_commit(repo, params["rev"])
        folder = params.get("path", "")
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        entries = self._listing(head.files, folder, recursive)
        if folder and not entries and folder not in head.files:
            raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
        self._json(200, entries)

    def do_paths_info(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo = self.hub.readable(self._user(), self._repo_type(params), params["repo"])
        head = self._head_commit(repo, params["rev"])
        form = parse_qs(body.decode())
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in head.files:
                out.append(head.files[path].entry(path))
            elif any(p.startswith(path + "/") for p in head.files):
                out.append(
                    {"type": "directory", "path": path, "size": 0, "oid": hashlib.sha1(path.encode()).hexdigest()}
                )
        self._json(200, out)

    def do_resolve(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo = self.hub.readable(self._user(), self._repo_type(params), params["repo"])
        head = self._head_commit(repo, params["rev"])
        stored = head.files.get(params["path"])
        if stored is None:
            raise HubError(404, f"Entry not found: {params['path']}", "EntryNotFound")
        data = stored.data
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": head.oid,
            "ETag": f'"{stored.oid}"',
            "Accept-Ranges": "bytes",
        }
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.oid}"'
            headers["X-Linked-Size"] = str(len(data))
        status = 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            start_text, end_text = ranged.groups()
            if start_text:
                start, end = int(start_text), int(end_text) if end_text else len(data) - 1
            else:
                start, end = max(0, len(data) - int(end_text)), len(data) - 1
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, head=self.command == "HEAD")
