"""A local stand-in of the Hugging Face Hub and hand-made cache folders, for tests and for trying
`longllava pull` with no network. Nothing here is used by inference itself.

    with HubStandIn() as hub:                       # http://127.0.0.1:<port>, in a thread
        hub.add_repo("org/tiny", write_tiny_longllava(tmp / "tiny"))
        pull_model(RepoReference("org/tiny"), endpoint=hub.url, cache_dir=tmp / "cache")

The stand-in answers what huggingface_hub asks during a download (`hf_api.py` `model_info` and
`list_repo_tree`, `file_download.py` `get_hf_file_metadata` and `http_get`):
`GET /api/models/ORG/NAME/revision/REV` (the commit and the files, with sizes when `?blobs=`),
`GET /api/models/ORG/NAME/tree/REV` (the file listing), and `HEAD`/`GET
/ORG/NAME/resolve/REV/FILE` with the headers the client requires: `X-Repo-Commit`, `ETag` (the
git blob id, or the sha256 for the weights, which the Hub keeps in LFS) and `Content-Length`.
Errors carry the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo).

`write_hf_cache` lays a checkpoint folder out as huggingface_hub does: `blobs/<hash>`,
`snapshots/<commit>/<file>` as relative symlinks, `refs/<revision>` holding the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from model.hub import REPO_FOLDER_PREFIX, WEIGHTS_SUFFIX

# The Hub stores large files in Git LFS; its pointer file is about this long.
LFS_POINTER_SIZE = 134


def file_hash(name: str, data: bytes) -> str:
    """The hash the Hub names a file by (its ETag, the blob's name in the cache): sha256 for an
    LFS file (the weights), else the git blob id."""
    if name.endswith(WEIGHTS_SUFFIX):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_of(files: dict[str, bytes], salt: str = "") -> str:
    """A 40-hex commit id that depends on the files (a stand-in for git's)."""
    digest = hashlib.sha1(salt.encode())
    for name in sorted(files):
        digest.update(f"{name}:{file_hash(name, files[name])}\n".encode())
    return digest.hexdigest()


def read_folder(folder: Path) -> dict[str, bytes]:
    """{name: bytes} of the files directly in a checkpoint folder."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def write_hf_cache(cache_dir: Path, repo_id: str, folder: Path, *, refs: tuple[str, ...] = ("main",)) -> Path:
    """Add the files of checkpoint `folder` to the Hugging Face cache `cache_dir` as repo `repo_id`
    at a commit of its own, with `refs` pointing to it; returns the snapshot folder."""
    files = read_folder(folder)
    commit = commit_of(files, repo_id)
    repo = Path(cache_dir) / (REPO_FOLDER_PREFIX + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / file_hash(name, data)
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no newline: huggingface_hub reads it verbatim
    return snapshot


@dataclass
class StandInRepo:
    """A repo of the stand-in: {commit: {file: bytes}}, {ref: commit}, and whether it is gated."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False

    def commit(self, revision: str) -> str | None:
        return self.refs.get(revision) or (revision if revision in self.commits else None)


class HubStandIn:
    """The stand-in server (module docstring), on 127.0.0.1 at a free port, serving in a thread
    between `__enter__` and `__exit__`. `requests` records "METHOD path" of every request."""

    def __init__(self) -> None:
        self.repos: dict[str, StandInRepo] = {}
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        # A short poll: `shutdown` waits for the serving loop to look.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, folder: Path, *, refs: tuple[str, ...] = ("main",), gated: bool = False) -> str:
        """Serve the files of `folder` as a commit of `repo_id` that `refs` point to; returns the commit."""
        files = read_folder(folder)
        commit = commit_of(files, repo_id)
        repo = self.repos.setdefault(repo_id, StandInRepo())
        repo.commits[commit], repo.gated = files, repo.gated or gated
        repo.refs.update(dict.fromkeys(refs, commit))
        return commit

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for a request; the Hub's routes (module docstring)."""
        self.requests.append(f"{method} {path}")
        parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) == 4:  # the default branch's info
            return self._api(f"{parts[2]}/{parts[3]}", "revision", "main", path)
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            return self._api(f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:]), path)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head=method == "HEAD")
        return _error(404, "RepoNotFound")

    def _api(self, repo_id: str, route: str, revision: str, path: str) -> tuple[int, dict[str, str], bytes]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound")
        commit = repo.commit(revision)
        if commit is None:
            return _error(404, "RevisionNotFound")
        files = repo.commits[commit]
        if route == "tree":
            listing = [{"type": "file", "path": name, **_tree_entry(name, data)} for name, data in files.items()]
            return 200, {"Content-Type": "application/json"}, json.dumps(listing).encode()
        with_sizes = "blobs=" in path  # files_metadata=True
        siblings = [{"rfilename": name} | (_sibling(name, data) if with_sizes else {}) for name, data in files.items()]
        info = {"id": repo_id, "sha": commit, "private": False, "gated": repo.gated, "siblings": siblings}
        return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()

    def _resolve(self, repo_id: str, revision: str, name: str, *, head: bool) -> tuple[int, dict[str, str], bytes]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound")
        if repo.gated:
            return _error(403, "GatedRepo")
        commit = repo.commit(revision)
        if commit is None:
            return _error(404, "RevisionNotFound")
        data = repo.commits[commit].get(name)
        if data is None:
            return _error(404, "EntryNotFound", commit)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{file_hash(name, data)}"', "Content-Length": str(len(data))}
        return 200, headers, b"" if head else data


def _tree_entry(name: str, data: bytes) -> dict:
    """A file of `/tree`: size, git blob id, and for the weights the LFS object."""
    entry: dict = {"size": len(data), "oid": file_hash("", data)}
    if name.endswith(WEIGHTS_SUFFIX):
        entry["lfs"] = {"oid": file_hash(name, data), "size": len(data), "pointerSize": LFS_POINTER_SIZE}
    return entry


def _sibling(name: str, data: bytes) -> dict:
    """A file of the model info with `?blobs=`: the same facts, spelt as that route spells them."""
    entry: dict = {"size": len(data), "blobId": file_hash("", data)}
    if name.endswith(WEIGHTS_SUFFIX):
        entry["lfs"] = {"sha256": file_hash(name, data), "size": len(data), "pointerSize": LFS_POINTER_SIZE}
    return entry


def _error(status: int, code: str, commit: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"}
    if commit is not None:
        headers["X-Repo-Commit"] = commit
    return status, headers, json.dumps({"error": code}).encode()


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(*hub.answer("GET", self.path), body=True)

        def do_HEAD(self) -> None:
            self._reply(*hub.answer("HEAD", self.path), body=False)

        def _reply(self, status: int, headers: dict[str, str], data: bytes, *, body: bool) -> None:
            self.send_response(status)
            headers = {"Content-Length": str(len(data))} | headers
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: `hub.requests` records the requests."""

    return Handler
