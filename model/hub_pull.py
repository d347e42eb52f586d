"""Downloading a model from the Hugging Face Hub into the standard cache (`longllava pull`): only
the files the tool reads (`model.hub.is_pulled_file`: config.json, the safetensors weights and
their index, the tokenizer files), through huggingface_hub, so that every Hugging Face tool sees
the same copy. The only module that makes network requests, and only when called.

    folder = pull_model("FreedomIntelligence/LongLLaVA-9B")   # the snapshot folder

Steps: the repo's file listing at the revision (`HfApi.model_info(files_metadata=True)`: the
commit and each file's size); each wanted file by `hf_hub_download` at that commit (files already
cached are skipped; progress in bytes to the caller); then `snapshot_download` of the same files,
which finds them all cached and records what huggingface_hub records after a download (the ref
`refs/<revision>` → commit, and the commit's listing, which later offline checks use). Every
failure is a one-line DownloadError naming the cause: no network, HF_HUB_OFFLINE, unknown repo or
revision, gated repo, full disk.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from model.errors import DownloadError
from model.hub import CONFIG_FILE, WEIGHTS_SUFFIX, RepoReference, find_cached, hub_cache_dir, is_pulled_file


class PullProgress(Protocol):
    """What a pull reports: the files to fetch ({name: size}; cached ones included), bytes as
    they are written (possibly negative: a resumed download restarting), and each file done."""

    def start(self, repo: str, files: dict[str, int]) -> None: ...

    def advance(self, num_bytes: int) -> None: ...

    def file_done(self, name: str) -> None: ...


def pull_model(
    reference: RepoReference,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    progress: PullProgress | None = None,
) -> Path:
    """Download what the tool reads of `reference` into the Hugging Face cache (default:
    `hub_cache_dir()`) from `endpoint` (default: HF_ENDPOINT as set now, else the Hub) and return
    the snapshot folder. Raises DownloadError (one line) when it cannot."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    from model.hub_progress import QuietBars, byte_counter  # imports huggingface_hub's tqdm

    cache = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    # Passed to every call: huggingface_hub builds file URLs from the HF_ENDPOINT it read at import.
    endpoint = endpoint or os.environ.get("HF_ENDPOINT", "").rstrip("/") or None
    with download_errors(reference, cache, endpoint):
        info = HfApi(endpoint=endpoint).model_info(reference.repo_id, revision=reference.revision, files_metadata=True)
        files = _wanted_files(reference, info.siblings or [])
        if progress is not None:
            progress.start(str(reference), files)
        bar = byte_counter(progress)
        for name in files:
            hf_hub_download(
                reference.repo_id, name, revision=info.sha, cache_dir=cache, endpoint=endpoint, tqdm_class=bar
            )
            if progress is not None:
                progress.file_done(name)
        snapshot_download(
            reference.repo_id,
            revision=reference.revision,
            cache_dir=cache,
            endpoint=endpoint,
            allow_patterns=[_literal_pattern(name) for name in files],
            tqdm_class=QuietBars,
        )
    location = find_cached(reference, cache_dir=cache)
    if location.missing:  # every listed file came down: the repo itself lacks what its index names
        raise DownloadError(f"{reference}: {location.missing[0]} is still missing after the download: a broken repo")
    return location.require()


def _wanted_files(reference: RepoReference, siblings: list[Any]) -> dict[str, int]:
    """{name: size} of the files to fetch, config.json first (a pull cut short then still leaves a
    snapshot `longllava models` recognises), the weights last. DownloadError when the repo is not
    a safetensors checkpoint."""
    files = {s.rfilename: int(s.size or 0) for s in siblings if is_pulled_file(s.rfilename)}
    if CONFIG_FILE not in files:
        raise DownloadError(f"{reference}: the repo has no {CONFIG_FILE} at its top level: not a model checkpoint")
    if not any(name.endswith(WEIGHTS_SUFFIX) for name in files):
        raise DownloadError(
            f"{reference}: the repo has no *{WEIGHTS_SUFFIX} weights (only safetensors checkpoints are supported)"
        )
    return dict(sorted(files.items(), key=lambda item: (item[0] != CONFIG_FILE, item[0].endswith(WEIGHTS_SUFFIX))))


def _literal_pattern(name: str) -> str:
    """An fnmatch pattern (huggingface_hub's allow_patterns) matching exactly `name`."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextmanager
def download_errors(reference: RepoReference, cache: Path, endpoint: str | None) -> Iterator[None]:
    """huggingface_hub's and the network's errors as one-line DownloadErrors naming the cause."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub = endpoint or constants.ENDPOINT
    try:
        yield
    except OfflineModeIsEnabled as e:
        raise DownloadError(f"{reference}: HF_HUB_OFFLINE is set, so nothing is downloaded; unset it to pull") from e
    except GatedRepoError as e:
        raise DownloadError(
            f"{reference} is a gated repo: accept its conditions at {hub}/{reference.repo_id} and log in "
            "(`hf auth login`, or set HF_TOKEN)"
        ) from e
    except RepositoryNotFoundError as e:
        raise DownloadError(
            f"{reference}: no such model repo at {hub} (or a private one: log in with `hf auth login` or set HF_TOKEN)"
        ) from e
    except RevisionNotFoundError as e:
        raise DownloadError(f"{reference}: the repo has no revision {reference.revision!r}") from e
    except HfHubHTTPError as e:
        raise DownloadError(f"{reference}: {hub} answered {_first_line(e)}") from e
    except (httpx2.TransportError, LocalEntryNotFoundError) as e:
        why = _first_line(e)
        raise DownloadError(f"{reference}: cannot reach {hub} ({why}); check the network or HF_ENDPOINT") from e
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(f"{reference}: no space left in {cache}: free some, or set HF_HOME elsewhere") from e
        raise DownloadError(f"{reference}: download failed: {_first_line(e)}") from e


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]
