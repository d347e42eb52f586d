"""The LongLLaVA and Jamba models in the local Hugging Face cache (`longllava models`), read from the
cache layout (`model/hub.py` describes it) without any request and without loading torch.

One entry per snapshot whose config.json names a Jamba-family `model_type`, complete or not: a
partial download is listed with the files it lacks, where huggingface_hub's own scan
(`scan_cache_dir`) would set the whole repo aside as corrupted. Sizes count each blob a snapshot
links to once. Everything read stays inside the repo's folder (the cache is untrusted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from model.config import JAMBA_MODEL_TYPES
from model.hub import (
    CONFIG_FILE,
    REPO_FOLDER_PREFIX,
    hub_cache_dir,
    listed_sizes,
    missing_files,
    parse_repo_reference,
    read_json_inside,
)

# A ref file holds a commit hash; anything longer is not one.
_REF_LIMIT = 256


@dataclass(frozen=True)
class CachedModel:
    """One downloaded revision: repo id, commit, the refs (branches, tags) that point to it, the
    snapshot folder, bytes on disk, the files it lacks (empty: complete) and its model_type."""

    repo_id: str
    commit: str
    refs: tuple[str, ...]
    path: Path
    size_bytes: int
    missing: tuple[str, ...]
    model_type: str

    @property
    def complete(self) -> bool:
        return not self.missing


def list_cached_models(cache_dir: str | os.PathLike[str] | None = None) -> list[CachedModel]:
    """The Jamba-family snapshots in the cache (default `hub_cache_dir()`), by repo id, the
    revisions that refs point to first; [] when there is no cache."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    if not cache.is_dir():
        return []
    found = []
    for repo in sorted(cache.glob(REPO_FOLDER_PREFIX + "*")):
        reference = parse_repo_reference(repo.name.removeprefix(REPO_FOLDER_PREFIX).replace("--", "/", 1))
        if reference is None or not (repo / "snapshots").is_dir():
            continue
        refs = _refs_by_commit(repo)
        for snapshot in sorted((repo / "snapshots").iterdir(), key=lambda s: (s.name not in refs, s.name)):
            model = _cached_model(reference.repo_id, snapshot, refs.get(snapshot.name, ()), cache)
            if model is not None:
                found.append(model)
    return found


def _cached_model(repo_id: str, snapshot: Path, refs: tuple[str, ...], cache: Path) -> CachedModel | None:
    root = snapshot.parent.parent.resolve()
    if not snapshot.is_dir() or snapshot.is_symlink():
        return None
    config = read_json_inside(snapshot / CONFIG_FILE, root)
    model_type = config.get("model_type") if config is not None else None
    if model_type not in JAMBA_MODEL_TYPES:
        return None
    missing = missing_files(snapshot, listed_sizes(repo_id, snapshot.name, cache), root=root)
    size = _size_on_disk(snapshot, root)
    return CachedModel(repo_id, snapshot.name, refs, snapshot, size, tuple(missing), str(model_type))


def _refs_by_commit(repo: Path) -> dict[str, tuple[str, ...]]:
    """{commit: (ref names)} from `refs/` (`main`, `v1.0`, `refs/pr/1`)."""
    by_commit: dict[str, list[str]] = {}
    for ref in sorted((repo / "refs").rglob("*")):
        if not ref.is_file() or ref.is_symlink():
            continue
        try:
            with open(ref, "rb") as f:
                commit = f.read(_REF_LIMIT + 1).decode("ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if 0 < len(commit) <= _REF_LIMIT:
            by_commit.setdefault(commit, []).append(ref.relative_to(repo / "refs").as_posix())
    return {commit: tuple(names) for commit, names in by_commit.items()}


def _size_on_disk(snapshot: Path, root: Path) -> int:
    """Bytes of the distinct files (blobs) the snapshot's entries lead to, inside `root`."""
    blobs = {}
    for entry in snapshot.rglob("*"):
        real = entry.resolve()
        if real.is_file() and real.is_relative_to(root):
            blobs[real] = real.stat().st_size
    return sum(blobs.values())
