"""Batch captioning: the inputs of a run, their shard, and the resumable loop over them.

Inputs: a file is one input; a folder gives each of its video and image files (by extension,
naturally sorted, subfolders with `recursive`) as one input each; `-` reads paths from stdin, one
per line. Each input is identified by its path in lexical normal form (`normalise_path`:
`./clip.mp4` is `clip.mp4`, `folder//clip.mp4` and `folder/./clip.mp4` are `folder/clip.mp4`;
`..` and symlinks are kept as written, relative paths stay relative): rerun from the same
directory to resume. An input given twice, in any of these spellings, is captioned once.

Sharding (`K/N`, K in 1..N): an input belongs to shard `1 + sha256(normalised path) mod N`.
Membership depends on the path alone (not on the other inputs or their order), so N machines
given the same inputs split them with no overlap and no gap, and adding files never moves
existing ones.

The loop answers one input at a time, appends its record (success or error) to the results file
(or stream) and, on the first SIGINT, stops after the current input; a second SIGINT interrupts
at once. The results file is never one of the inputs (`check_output_not_input`).
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from longllava_cli.jsonl import Record, Results, ResultsFileError, is_success, normalise_path
from longllava_cli.output import ItemProgress, note
from longllava_cli.paths import read_stdin_paths

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv", ".3gp", ".ogv"}
)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


def expand_inputs(args: Sequence[str], *, recursive: bool, stdin: TextIO | None = None) -> list[str]:
    """Inputs of a caption run, normalised, in order, each once (see the module docstring)."""
    from sampling.discover import list_folder_files  # sampling's package init imports torch

    expanded: list[str] = []
    for arg in args:
        paths = read_stdin_paths(stdin) if arg == "-" else [arg]
        for path in paths:
            if Path(path).is_dir():
                files = list_folder_files(Path(path), recursive=recursive)
                expanded.extend(str(f) for f in files if f.suffix.lower() in MEDIA_EXTENSIONS)
            else:
                expanded.append(path)
    return list(dict.fromkeys(normalise_path(p) for p in expanded))


def check_output_not_input(output: str | os.PathLike[str], inputs: Iterable[str]) -> None:
    """ResultsFileError when `output` is one of `inputs`: the same file by device and inode (so
    also through symlinks, hard links and any spelling) or, while `output` does not exist, the
    same resolved path."""
    try:
        info: os.stat_result | None = os.stat(output)
    except FileNotFoundError:
        info = None
    except OSError:
        return  # `check_results_path` reports what is wrong with `output` itself
    resolved = os.path.realpath(output)
    for path in inputs:
        if _same_file(path, info, resolved):
            spelling = "" if str(output) == path else f" ({path})"
            raise ResultsFileError(f"{output} is one of the inputs{spelling}; the results need a file of their own")


def _same_file(path: str, info: os.stat_result | None, resolved: str) -> bool:
    if info is None:
        return os.path.realpath(path) == resolved
    try:
        return os.path.samestat(info, os.stat(path))
    except OSError:
        return False


def parse_shard(text: str) -> tuple[int, int]:
    """ "K/N" → (K, N) with 1 <= K <= N; ValueError otherwise."""
    k, sep, n = text.partition("/")
    try:
        shard, count = int(k), int(n)
    except ValueError:
        shard = count = 0
    if not sep or not 1 <= shard <= count:
        raise ValueError(f"shard must be K/N with 1 <= K <= N (e.g. 2/8), got {text!r}")
    return shard, count


def shard_of(path: str, count: int) -> int:
    """The shard (1..count) `path` belongs to: stable across runs, machines and Python versions,
    and the same for every spelling of the path (`./a.mp4`, `a.mp4`)."""
    digest = hashlib.sha256(normalise_path(path).encode("utf-8", "surrogateescape")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def select_shard(paths: Iterable[str], shard: int, count: int) -> list[str]:
    return [p for p in paths if shard_of(p, count) == shard]


@dataclass
class CaptionSummary:
    total: int  # inputs of this shard
    skipped: int  # already in the output
    succeeded: int = 0
    failed: int = 0
    interrupted: bool = False


@contextmanager
def stop_on_sigint(what: str = "the current input") -> Iterator[Callable[[], bool]]:
    """Yields `stopping()`: True once SIGINT arrived (announced as stopping after `what`). A second
    SIGINT raises KeyboardInterrupt."""
    state = {"stop": False}

    def handle(signum: int, frame: Any) -> None:
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        note(f"interrupted: stopping after {what} (Ctrl-C again to stop now)")

    try:
        previous = signal.signal(signal.SIGINT, handle)
    except ValueError:  # not the main thread: no handler, Ctrl-C interrupts at once
        yield lambda: False
        return
    try:
        yield lambda: state["stop"]
    finally:
        signal.signal(signal.SIGINT, previous)


def caption_or_error(
    path: str, caption_one: Callable[[str], Record], describe_failure: Callable[[BaseException], str]
) -> Record:
    """The one record of `path`: `caption_one(path)`'s success record, or `{"path", "error"}` with
    `describe_failure`'s message when it raises (KeyboardInterrupt propagates). Local runs and Ray
    workers make their records here, so both write the same lines."""
    try:
        return caption_one(path)
    except Exception as error:
        return {"path": path, "error": describe_failure(error)}


def outcome(record: Record) -> str:
    """What the progress shows for a finished input: "ok", or "error: <message>" without the
    path the message starts with."""
    if is_success(record):
        return "ok"
    return "error: " + str(record["error"]).removeprefix(f"{record['path']}: ")


def missing_inputs(inputs: Sequence[str], results: Results) -> tuple[list[str], CaptionSummary]:
    """The inputs not yet in `results` (normalised, repeats dropped, in order) and the summary to fill."""
    unique = list(dict.fromkeys(normalise_path(p) for p in inputs))
    todo = [p for p in unique if p not in results.done]
    summary = CaptionSummary(total=len(unique), skipped=len(unique) - len(todo))
    if summary.skipped:
        note(f"resuming: {summary.skipped} of {summary.total} inputs already in {results.path}")
    return todo, summary


def record_outcome(summary: CaptionSummary, results: Results, record: Record, progress: ItemProgress) -> None:
    """Append one finished input's record, count it and show it."""
    results.append(record)
    if is_success(record):
        summary.succeeded += 1
    else:
        summary.failed += 1
    progress.advance(record["path"], outcome(record))


def run_captions(
    inputs: Sequence[str],
    results: Results,
    caption_one: Callable[[str], Record],
    *,
    describe_failure: Callable[[BaseException], str],
) -> CaptionSummary:
    """Caption every input not yet in `results`, each once: inputs are normalised
    (`normalise_path`) and repeats dropped. `caption_one(path)` gets the normalised path, returns
    the success record and raises on failure, which becomes `{"path", "error"}`
    (KeyboardInterrupt propagates)."""
    todo, summary = missing_inputs(inputs, results)
    with stop_on_sigint() as stopping, ItemProgress(len(todo), "caption") as progress:
        for path in todo:
            if stopping():
                summary.interrupted = True
                break
            record = caption_or_error(path, caption_one, describe_failure)
            record_outcome(summary, results, record, progress)
    return summary
