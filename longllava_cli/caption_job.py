"""`caption`'s build, call and write steps: the job (where results go, which inputs, the request
each input gets), running it over the resumable results file, and the summary and exit code.

Everything that can refuse the job does so before the model loads: the output (never a file
longllava did not write, never one of the inputs), the shard, URLs, the request's options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from longllava_cli import backend as library
from longllava_cli.caption import (
    CaptionSummary,
    check_output_not_input,
    expand_inputs,
    parse_shard,
    run_captions,
    select_shard,
)
from longllava_cli.clickcompat import BadParameter
from longllava_cli.errors import EXIT_INTERRUPTED, EXIT_PARTIAL, describe_error
from longllava_cli.jsonl import Results, ResultsFile, ResultsStream, check_results_path, is_success
from longllava_cli.output import note, status
from longllava_cli.paths import check_not_urls

if TYPE_CHECKING:
    from longllava_cli.ray_plan import RaySettings
    from model.request import AskRequest, ModelSpec
    from model.results import AskResult

STDOUT = "-"


@dataclass(frozen=True)
class CaptionJob:
    """output: a results file, or "-" for JSON Lines on stdout; paths: this run's (or shard's)
    inputs, normalised; request: what each input is asked (its `inputs` replaced per input)."""

    output: str
    paths: tuple[str, ...]
    request: AskRequest
    model: ModelSpec
    retry_errors: bool = True
    ray: RaySettings | None = None  # caption on a Ray cluster (caption_ray.py) instead of in this process


def check_output(output: str) -> None:
    """Refuse, before any work, an output that is not a results file longllava may append to."""
    if output != STDOUT:
        check_results_path(output)


def select_inputs(inputs: list[str], *, output: str, shard: str | None, recursive: bool) -> tuple[str, ...]:
    """The inputs of this run (folders expanded, `-` read), never the output, only shard K/N's."""
    try:
        part = parse_shard(shard) if shard else None
    except ValueError as e:
        raise BadParameter(str(e), param_hint="--shard") from e
    check_not_urls(inputs)
    paths = expand_inputs(inputs, recursive=recursive)
    if output != STDOUT:
        check_output_not_input(output, paths)
    return tuple(select_shard(paths, *part) if part is not None else paths)


def run_job(job: CaptionJob) -> tuple[CaptionSummary | None, int]:
    """Caption every input without a record yet; (summary or None when nothing was to do, inputs
    whose latest record is an error)."""
    keep = is_success if job.retry_errors else (lambda record: True)
    with ResultsStream() if job.output == STDOUT else ResultsFile(job.output, keep=keep) as results:
        summary = _caption_missing(job, results)
        failed = len(results.failed.intersection(job.paths))
    return summary, failed


def _caption_missing(job: CaptionJob, results: Results) -> CaptionSummary | None:
    if not [p for p in job.paths if p not in results.done]:
        return None
    if job.ray is not None:
        from longllava_cli.caption_ray import run_captions_on_ray  # imports Ray: only with --ray

        return run_captions_on_ray(job, results)
    with status(f"loading {job.model.path}"):
        loaded = library.load_model(job.model)
    caption_one = lambda path: caption_input(loaded, job.request, path)
    return run_captions(list(job.paths), results, caption_one, describe_failure=failure_message)


def caption_input(loaded: Any, request: AskRequest, path: str) -> dict[str, Any]:
    """Caption one input with a loaded model: `request` asked of `path` alone, as its record.
    Raises what the library raises (`caption_or_error` turns it into an error record)."""
    return caption_record(path, library.ask(loaded, dataclasses.replace(request, inputs=(path,))))


def failure_message(error: BaseException) -> str:
    """An error record's message: the error table's one line, without "error:"."""
    return describe_error(error)[0]


def report(job: CaptionJob, summary: CaptionSummary | None, failed: int) -> None:
    """The summary line on stderr and the exit code (130 interrupted, 3 some inputs failed)."""
    written = f"{summary.succeeded} captioned, {summary.failed} failed" if summary else "nothing to do"
    where = "stdout" if job.output == STDOUT else job.output
    note(f"caption: {written}; {len(job.paths)} inputs, {failed} with errors in {where}")
    if summary is not None and summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


def caption_record(path: str, result: AskResult) -> dict[str, Any]:
    """The JSON Lines record of one captioned input (schema in the README)."""
    answer = result.answers[0]
    return {
        "path": path,
        "caption": answer.text,
        "finish_reason": answer.finish_reason,
        "frames": [{"index": f.index, "timestamp": f.timestamp} for info in result.inputs for f in info.frames],
        "num_prompt_tokens": result.num_prompt_tokens,
        "num_new_tokens": answer.num_tokens,
        "timings": result.timings,
    }
