"""Model references: a checkpoint folder, or a Hugging Face repo id `ORG/NAME[@REVISION]` found in
the local Hugging Face cache. Nothing is fetched here: `model.hub_pull` downloads, and only when
the user runs `longllava pull`.

    find_model("FreedomIntelligence/LongLLaVA-9B")    # ModelLocation; .path None when not downloaded
    resolve_model("FreedomIntelligence/LongLLaVA-9B@main")  # the snapshot folder, or ModelNotDownloadedError

Resolution: a path that exists is that folder (a local folder wins over a repo id spelt the same);
else a reference shaped like a repo id is looked up offline, through huggingface_hub's own lookup
(`snapshot_download(local_files_only=True)`), in the cache folder huggingface_hub uses
(HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub); anything else is a folder path,
which the loader reports missing. No request is ever made, so HF_HUB_OFFLINE changes nothing here.

The cache layout (huggingface_hub `file_download.py`, `_tree_cache.py`): `models--ORG--NAME/`
holds `blobs/<hash>` (file contents named by their hash), `snapshots/<commit>/<file>` (relative
symlinks to `../../blobs/<hash>`), `refs/<revision>` (the commit a branch or tag pointed to when
it was downloaded) and `trees/<commit>.json` (the repo's file listing, written by
`snapshot_download`).

A snapshot may be partial: an interrupted download leaves files out (a file's symlink is made
only once its blob is whole), and a blob deleted later leaves a dangling symlink. `missing_files`
checks what the loader reads (config.json and every shard the index names), every dangling
symlink, and, where huggingface_hub recorded the repo's listing, every file `pull` fetches at its
listed size. The cache is untrusted like a checkpoint: a ref leading out of the repo's `snapshots`
folder is not followed, and files are read only inside the repo's folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from model.errors import ModelNotDownloadedError

CONFIG_FILE = "config.json"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
WEIGHTS_SUFFIX = ".safetensors"
# What `pull` fetches (huggingface_hub's allow_patterns): the files the loader reads, nothing else.
PULL_PATTERNS = [CONFIG_FILE, INDEX_FILE, *TOKENIZER_FILES, "*" + WEIGHTS_SUFFIX]
REPO_FOLDER_PREFIX = "models--"
# huggingface_hub's rules for a repo id (`utils/_validators.py`), ASCII only: ORG/NAME of letters,
# digits, `.`, `_`, `-`, each at most 96 characters, without `--` or `..`.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# A branch, tag (`v1.0`, `refs/pr/1`) or commit hash.
_REVISION = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_MAX_REVISION = 255
# config.json and the index are small; more is corruption (model/loading.py has the same bound).
_JSON_LIMIT = 64 * 2**20


@dataclass(frozen=True)
class RepoReference:
    """`ORG/NAME[@REVISION]`; revision None: the repo's default branch."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


def parse_repo_reference(text: str) -> RepoReference | None:
    """The repo id and revision of `ORG/NAME[@REVISION]`, or None when `text` is not shaped so."""
    repo_id, at, revision = text.partition("@")
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        return None
    if at and (len(revision) > _MAX_REVISION or not _REVISION.fullmatch(revision) or ".." in revision):
        return None
    return RepoReference(repo_id, revision or None)


def pull_command(reference: RepoReference | str) -> str:
    return f"longllava pull {reference}"


@dataclass(frozen=True, kw_only=True)
class ModelLocation:
    """Where a model reference points. A folder: `path`, as given (it may not exist: the loader
    says so). A repo id: `repo_id` and `revision` (as asked; None: the default branch), and when
    the cache holds it, `path` (the snapshot folder), `commit` and `missing` (the files a partial
    download lacks, empty when complete); `path` is None when it is not downloaded.
    `cache_dir`: the Hugging Face cache folder that was searched (repo ids only)."""

    reference: str
    path: Path | None
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    missing: tuple[str, ...] = ()
    cache_dir: Path | None = None

    @property
    def is_repo(self) -> bool:
        return self.repo_id is not None

    @property
    def is_downloaded(self) -> bool:
        """A folder: always (the loader checks it); a repo id: in the cache, complete."""
        return self.path is not None and not self.missing

    @property
    def name(self) -> str:
        """`ORG/NAME[@REVISION]` for a repo id, else the folder path."""
        return str(RepoReference(self.repo_id, self.revision)) if self.repo_id else str(self.path)

    def require(self) -> Path:
        """The local folder. Raises ModelNotDownloadedError (one line, naming the missing file and
        the `longllava pull` command) for a repo id that is not downloaded, or only partly."""
        if self.path is not None and not self.missing:
            return self.path
        pull = pull_command(self.name)
        if self.path is None:
            folder = Path(self.reference).expanduser()
            raise ModelNotDownloadedError(
                f"{self.name}: not downloaded: run `{pull}` (looked in the Hugging Face cache {self.cache_dir}, and "
                f"found no folder {folder} either)"
            )
        name = self.missing[0]
        what = "is incomplete" if (self.path / name).is_file() else "is missing"
        more = f" (and {len(self.missing) - 1} more)" if len(self.missing) > 1 else ""
        raise ModelNotDownloadedError(
            f"{self.name}: {name} {what}{more} in {self.path}, a partial download; run `{pull}` to complete it"
        )


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub
    (as huggingface_hub read them when it was imported)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def repo_folder(cache_dir: Path, repo_id: str) -> Path:
    """`models--ORG--NAME`, a model repo's folder in the cache."""
    return cache_dir / (REPO_FOLDER_PREFIX + repo_id.replace("/", "--"))


def model_reference(ref: str | os.PathLike[str]) -> Path | str:
    """A folder path as a Path (`~` expanded); a repo id that names no existing path, as given."""
    text = os.fspath(ref)
    path = Path(text).expanduser()
    return text if not path.exists() and parse_repo_reference(text) is not None else path


def find_model(ref: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> ModelLocation:
    """Where `ref` points (module docstring for the order), without raising for a model that is
    absent: `path` None means a repo id not in the cache. `cache_dir`: the Hugging Face cache
    folder (default: `hub_cache_dir()`). Reads the cache only: no network, ever."""
    text = os.fspath(ref)
    path = Path(text).expanduser()
    reference = parse_repo_reference(text)
    if path.exists() or reference is None:
        return ModelLocation(reference=text, path=path)
    return find_cached(reference, cache_dir=cache_dir)


def find_cached(reference: RepoReference, *, cache_dir: str | os.PathLike[str] | None = None) -> ModelLocation:
    """The repo's snapshot in the Hugging Face cache (default `hub_cache_dir()`), looked up
    offline; `path` None when it is not there."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    found = dict(reference=str(reference), repo_id=reference.repo_id, revision=reference.revision, cache_dir=cache)
    snapshot = _cached_snapshot(reference, cache)
    if snapshot is None:
        return ModelLocation(path=None, **found)
    listed = listed_sizes(reference.repo_id, snapshot.name, cache)
    missing = tuple(missing_files(snapshot, listed, root=snapshot.parent.parent))
    return ModelLocation(path=snapshot, commit=snapshot.name, missing=missing, **found)


def resolve_model(ref: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local checkpoint folder `ref` names: the folder itself, or a repo id's snapshot in the
    cache. Raises ModelNotDownloadedError for a repo id that is not downloaded, or only partly."""
    return find_model(ref, cache_dir=cache_dir).require()


def _cached_snapshot(reference: RepoReference, cache: Path) -> Path | None:
    """The snapshot folder huggingface_hub finds for the reference, offline; None when absent or
    when the ref it follows leads out of the repo's `snapshots` folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            reference.repo_id,
            revision=reference.revision,
            cache_dir=cache,
            local_files_only=True,
            allow_patterns=PULL_PATTERNS,
        )
    except IncompleteSnapshotError as e:  # its listing says files are missing: ours names them
        folder = e.snapshot_path
    except LocalEntryNotFoundError:
        return None
    snapshot = Path(folder)
    snapshots = repo_folder(cache, reference.repo_id).resolve() / "snapshots"
    if snapshot.resolve().parent != snapshots or not snapshot.is_dir():
        return None
    return snapshots / snapshot.resolve().name


def listed_sizes(repo_id: str, commit: str, cache: Path) -> dict[str, int] | None:
    """{file: size} of the repo at `commit` as huggingface_hub recorded it when it downloaded the
    snapshot (`get_cached_repo_tree`), or None when it did not (a hand-made or older cache)."""
    from huggingface_hub import get_cached_repo_tree

    try:
        return {f.path: int(f.size) for f in get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache)}
    except Exception:  # no listing, or an unreadable one (untrusted): check without it
        return None


def missing_files(snapshot: Path, listed: Mapping[str, int] | None = None, *, root: Path | None = None) -> list[str]:
    """The files of a model snapshot that are absent or incomplete: config.json, each shard the
    index names, each dangling symlink, and each file `pull` fetches that `listed` ({name: size},
    the repo's own listing) holds at another size. root: the folder every file must stay inside
    (the repo's folder in the cache; default the snapshot); a file leading elsewhere is absent."""
    root = (root or snapshot).resolve()
    missing: list[str] = []

    def note(name: str) -> None:
        if name not in missing:
            missing.append(name)

    for name in [CONFIG_FILE, *_index_shards(snapshot, root)]:
        if _file_inside(snapshot / name, root) is None:
            note(name)
    for entry in sorted(snapshot.iterdir()):
        if entry.is_symlink() and not entry.exists():
            note(entry.name)
    for name, size in sorted((listed or {}).items()):
        if is_pulled_file(name):
            file = _file_inside(snapshot / name, root)
            if file is None or file.stat().st_size != size:
                note(name)
    return missing


def is_pulled_file(name: str) -> bool:
    """Whether `pull` fetches a repo file: the ones the loader reads, at the repo's top level."""
    return "/" not in name and (name in (CONFIG_FILE, INDEX_FILE, *TOKENIZER_FILES) or name.endswith(WEIGHTS_SUFFIX))


def _file_inside(path: Path, root: Path) -> Path | None:
    """`path` when it is a regular file whose real path lies inside `root`, else None."""
    return path if path.is_file() and path.resolve().is_relative_to(root) else None


def read_json_inside(path: Path, root: Path) -> dict | None:
    """A small JSON object file inside `root` (its real path), or None: absent, outside, too big,
    unreadable or not an object."""
    if _file_inside(path, root) is None:
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read(_JSON_LIMIT + 1)
        data = json.loads(raw.decode("utf-8")) if len(raw) <= _JSON_LIMIT else None
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _index_shards(snapshot: Path, root: Path) -> list[str]:
    """The shard files `model.safetensors.index.json` names, in order, without repeats; names that
    are not plain `*.safetensors` file names are left to the loader, which refuses them."""
    index = read_json_inside(snapshot / INDEX_FILE, root)
    weight_map = index.get("weight_map") if index is not None else None
    if not isinstance(weight_map, dict):
        return []
    names = (n for n in weight_map.values() if isinstance(n, str) and n.endswith(WEIGHTS_SUFFIX))
    return list(dict.fromkeys(n for n in names if n == Path(n).name and "\\" not in n and "\0" not in n))


def redownload_hint(folder: Path) -> str:
    """How to replace a missing or damaged file of checkpoint `folder`: for a snapshot of the Hugging
    Face cache, the `longllava pull` command of its repo and commit; else "re-download it"."""
    real = folder.resolve()
    storage = real.parent.parent.name
    if real.parent.name == "snapshots" and storage.startswith(REPO_FOLDER_PREFIX):
        reference = parse_repo_reference(storage.removeprefix(REPO_FOLDER_PREFIX).replace("--", "/", 1))
        if reference is not None:
            return f"run `{pull_command(RepoReference(reference.repo_id, real.name))}` to complete the download"
    return "re-download it"
