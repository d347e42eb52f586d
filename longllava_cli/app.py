"""The `longllava` command line: ask, caption, frames, info, estimate.

Each command parses its options, checks the constraints between them, builds a request object,
calls one library function and writes the result: stdout for results (text, one JSON object,
JSON Lines), stderr for everything else. torch and the library are imported inside the commands
so `longllava --help` is instant. Errors go through `errors.report_errors` (one line, exit code).
→ fastapi/fastapi-cli `src/fastapi_cli/cli.py`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from longllava_cli import backend as library
from longllava_cli import output
from longllava_cli.backend import AskRequest, ModelRequest
from longllava_cli.clickcompat import BadParameter, Context, ParameterSource, UsageError
from longllava_cli.errors import EXIT_INTERRUPTED, EXIT_PARTIAL, describe_error, exit_with_code, report_errors
from longllava_cli.options import (
    DEFAULT_CAPTION_PROMPT,
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_FRAMES,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MAX_TILES,
    MAX_FRAMES,
    OUTPUT_PANEL,
    Backend,
    BackendOption,
    ChunkTokensOption,
    ConfigOption,
    DeviceOption,
    Dtype,
    DtypeOption,
    EndOption,
    FpsOption,
    FramesOption,
    JsonOption,
    MaxFramesOption,
    MaxNewTokensOption,
    MaxTilesOption,
    MemoryBudgetOption,
    ModelOption,
    QuietLongOption,
    QuietOption,
    RecursiveOption,
    SeedOption,
    StartOption,
    StreamOption,
    TemperatureOption,
    TileSizeOption,
    TilesOption,
    TopKOption,
    TopPOption,
    VerboseOption,
    VisionTowerOption,
)
from longllava_cli.output import note, require_stdout, status, write_json, write_text
from longllava_cli.paths import check_not_urls, expand_dash

if TYPE_CHECKING:
    from model.engine import GenerationOptions
    from sampling import SamplingOptions


class _Group(TyperGroup):
    """Runs every command inside the one error table, and the whole run (parsing included) inside
    the exit-code rules: usage errors as one line, Ctrl-C at any point as 130."""

    def invoke(self, ctx: Context) -> Any:
        with report_errors():
            return super().invoke(ctx)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        output.reset()
        exit_with_code(lambda: super(_Group, self).main(*args, standalone_mode=False, **kwargs))


app = typer.Typer(
    name="longllava",
    cls=_Group,
    help="Ask questions about long videos and large image sets with LongLLaVA.",
    epilog="Exit codes: 0 ok, 1 runtime failure (bad media, bad checkpoint, out of memory), 2 usage error, "
    "3 some caption inputs failed, 130 interrupted. LONGLLAVA_DEBUG=1 shows tracebacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"longllava {version('longllava')}")
        except PackageNotFoundError:
            typer.echo("longllava (not installed)")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="More log lines on stderr (-vv: debug, FFmpeg's own messages included)."
        ),
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors on stderr: no notes, warnings, spinner or progress.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_show_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """Answers and results go to stdout, progress and logs to stderr. Exit codes: 0 ok, 1 runtime
    failure, 2 usage error, 3 some caption inputs failed, 130 interrupted. LONGLLAVA_DEBUG=1 shows
    tracebacks."""
    output.configure(verbose=verbose, quiet=quiet)
    warnings.showwarning = _show_warning


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Library warnings as one line without the source line Python prints: `note: ...` for the
    sampling notices (what was left out or scaled), `warning: ...` for the rest; none when quiet."""
    names = {cls.__name__ for cls in category.__mro__}
    informational = "SamplingNotice" in names and "DamagedMediaWarning" not in names
    note(f"{'note' if informational else 'warning'}: {' '.join(str(message).split())}")


# --------------------------------------------------------------------------------------------
# Request building shared by the commands
# --------------------------------------------------------------------------------------------


def _given(ctx: Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def _configured(ctx: Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.DEFAULT_MAP


def _winner(ctx: Context, first: str, second: str, conflict: str) -> str:
    """Of two set options that exclude each other, the one given on the command line: a flag
    replaces the config file's value it conflicts with. UsageError when both come from one place."""
    if _given(ctx, first) != _given(ctx, second):
        return first if _given(ctx, first) else second
    where = "" if _given(ctx, first) else f" (the config file {ctx.params.get('config') or ''} sets both)"
    raise UsageError(conflict + where)


def _sampling_options(
    ctx: Context,
    *,
    frames: int,
    fps: float | None,
    max_frames: int,
    start: float | None,
    end: float | None,
    tiles: bool = False,
    tile_size: int | None = None,
    max_tiles: int = DEFAULT_MAX_TILES,
    recursive: bool = False,
    backend: Backend = Backend.auto,
    image_size: int | None = None,
) -> SamplingOptions:
    """The sampling options of a command; command-line flags win over conflicting config values,
    and config values of a feature that is off (tiling) are ignored."""
    if fps is not None and (_given(ctx, "frames") or _configured(ctx, "frames")):
        alternatives = "--frames and --fps are alternatives: give one (--max-frames caps --fps)"
        fps = fps if _winner(ctx, "fps", "frames", alternatives) == "fps" else None
    if not tiles:
        if _given(ctx, "tile_size") or _given(ctx, "max_tiles"):
            raise UsageError("--tile-size and --max-tiles apply with --tiles")
        tile_size, max_tiles = None, DEFAULT_MAX_TILES
    if start is not None and end is not None and start >= end and _given(ctx, "start") != _given(ctx, "end"):
        start, end = (start, None) if _given(ctx, "start") else (None, end)
    from sampling import SamplingOptions

    extra = {"image_size": image_size} if image_size else {}
    try:
        return SamplingOptions(
            num_frames=frames,
            fps=fps,
            max_frames=max_frames,
            start=start,
            end=end,
            tiles=tiles,
            tile_size=tile_size,
            max_tiles=max_tiles,
            recursive=recursive,
            backend=backend.value,
            **extra,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e


def _generation_options(
    *, max_new_tokens: int, temperature: float, top_p: float, top_k: int, seed: int | None
) -> GenerationOptions:
    from model.engine import GenerationOptions

    try:
        return GenerationOptions(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed
        )
    except ValueError as e:
        raise UsageError(str(e)) from e


def _model_path(model: Path | None) -> Path:
    """The checkpoint folder to use; with none configured, the built-in demo model, announced on stderr."""
    if model is not None:
        return model.expanduser()
    from model.demo import DEMO_NOTICE, demo_model_dir

    demo = demo_model_dir()
    if demo is None:
        raise UsageError(
            "no model given: pass --model DIR (a LongLLaVA checkpoint folder), set LONGLLAVA_MODEL, "
            "or put `model: DIR` in the config file"
        )
    note(DEMO_NOTICE)
    return demo


def _model_request(model: Path | None, *, device: str, dtype: Dtype, vision_tower: Path | None) -> ModelRequest:
    """Which checkpoint to load, where and how; the device is checked here, before any loading."""
    device = library.check_device(device)  # before the demo note: a mistyped device is the only news
    return ModelRequest(
        path=_model_path(model),
        device=device,
        dtype=None if dtype == Dtype.auto else dtype.value,
        vision_tower=vision_tower,
    )


def _memory_budget(size: str | None) -> int | None:
    from longllava_cli.checkpoint import parse_size

    try:
        return parse_size(size) if size else None
    except ValueError as e:
        raise BadParameter(str(e), param_hint="--memory-budget") from e


def _read_paths(args: list[str]) -> list[str]:
    """`-` replaced by the paths read from stdin, one per line; URLs refused."""
    paths = expand_dash(args)
    check_not_urls(paths)
    return paths


def _check_paths_exist(paths: tuple[str, ...]) -> None:
    from sampling import InputError
    from sampling.errors import display_path

    for path in paths:
        if not Path(path).exists():
            raise InputError(f"{display_path(path)}: no such file or folder; check the path")


def _split_ask_args(args: list[str], questions: list[str]) -> tuple[list[str], list[str]]:
    """PATH... QUESTION: with -q, every argument is a path; without, the last one is the question."""
    if questions:
        return args, questions
    if not args:
        raise UsageError("missing QUESTION: give it as the last argument or with -q/--question")
    *paths, question = args
    if question == "-" or (not paths and Path(question).exists()):
        raise UsageError(f"missing QUESTION after {question!r}: give it as the last argument or with -q")
    return paths, [question]


def _check_questions(questions: list[str]) -> tuple[str, ...]:
    if any(not q.strip() for q in questions):
        raise UsageError("a question is empty: ask something, e.g. \"What happens in the video?\"")
    return tuple(questions)


# --------------------------------------------------------------------------------------------
# ask
# --------------------------------------------------------------------------------------------


@app.command(no_args_is_help=True)
def ask(
    ctx: typer.Context,
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH... QUESTION",
            show_default=False,
            help="Videos, images or folders ('-': read paths from stdin, one per line), then the question "
            "(unless given with -q).",
        ),
    ],
    question: Annotated[
        list[str] | None,
        typer.Option(
            "--question",
            "-q",
            show_default=False,
            help="A question; repeat for several (the inputs are read once, each question answered in turn).",
        ),
    ] = None,
    model: ModelOption = None,
    vision_tower: VisionTowerOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    chunk_tokens: ChunkTokensOption = DEFAULT_CHUNK_TOKENS,
    memory_budget: MemoryBudgetOption = None,
    frames: FramesOption = DEFAULT_FRAMES,
    fps: FpsOption = None,
    max_frames: MaxFramesOption = MAX_FRAMES,
    start: StartOption = None,
    end: EndOption = None,
    tiles: TilesOption = False,
    tile_size: TileSizeOption = None,
    max_tiles: MaxTilesOption = DEFAULT_MAX_TILES,
    recursive: RecursiveOption = False,
    backend: BackendOption = Backend.auto,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    temperature: TemperatureOption = 0.0,
    top_p: TopPOption = 1.0,
    top_k: TopKOption = 0,
    seed: SeedOption = None,
    json: JsonOption = False,
    stream: StreamOption = False,
    verbose: VerboseOption = 0,
    quiet: QuietLongOption = False,
    config: ConfigOption = None,
) -> None:
    """Answer questions about videos, images and folders.

    [dim]longllava ask talk.mp4 "What is the speaker holding?"[/dim]
    """
    paths, questions = _split_ask_args(args, question or [])
    if json and stream:
        conflict = "--stream writes text as it comes; it cannot be combined with --json"
        json = _winner(ctx, "json", "stream", conflict) == "json"
        stream = not json
    request = AskRequest(
        inputs=tuple(_read_paths(paths)),
        questions=_check_questions(questions),
        sampling=_sampling_options(
            ctx,
            frames=frames,
            fps=fps,
            max_frames=max_frames,
            start=start,
            end=end,
            tiles=tiles,
            tile_size=tile_size,
            max_tiles=max_tiles,
            recursive=recursive,
            backend=backend,
        ),
        generation=_generation_options(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed
        ),
        chunk_tokens=chunk_tokens,
        memory_budget=_memory_budget(memory_budget),
    )
    model_request = _model_request(model, device=device, dtype=dtype, vision_tower=vision_tower)
    _check_paths_exist(request.inputs)  # before a model load that may take minutes
    require_stdout()
    _answer(request, model_request, json=json, stream=stream)


def _answer(request: AskRequest, model_request: ModelRequest, *, json: bool, stream: bool) -> None:
    """Load, answer, write: the answers as text, streamed text or one JSON object on stdout."""
    with status(f"loading {model_request.path}"):
        loaded = library.load_model(model_request)
    streamer = _AnswerStreamer(request.questions) if stream else None
    with status("reading the inputs") if streamer is None else _nullcontext() as update:
        progress = _SpinnerText(update, len(request.questions)) if update is not None else None
        result = library.ask(loaded, request, on_text=streamer, on_progress=progress)
    if json:
        write_json({"model": str(model_request.path), **result.to_dict()})
    elif streamer is not None:
        streamer.finish()
    else:
        write_text(_format_answers([(a.question, a.text) for a in result.answers]))


class _SpinnerText:
    """`on_progress` for the spinner: the stage and a count, e.g. "vision 312/1000 frames"."""

    def __init__(self, update: Callable[[str], None], num_questions: int) -> None:
        self.update, self.num_questions = update, num_questions

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "vision":
            self.update(f"vision {done}/{total} frames")
        elif stage == "answer":
            self.update("answering" if self.num_questions == 1 else f"answering {done + 1}/{total}")
        else:
            self.update(stage)


def _format_answers(answers: list[tuple[str, str]]) -> str:
    """One question: the answer alone. Several: each under a `Q: question` line, blank-separated."""
    if len(answers) == 1:
        return answers[0][1] + "\n"
    return "\n".join(f"Q: {q}\n{a}\n" for q, a in answers)


class _AnswerStreamer:
    """`on_text` for --stream: pieces to stdout as they come, a `Q:` header per question when several."""

    def __init__(self, questions: tuple[str, ...]) -> None:
        self.questions = questions
        self.current: int | None = None

    def __call__(self, number: int, text: str) -> None:
        self._start(number)
        write_text(text)

    def _start(self, number: int) -> None:
        if self.current == number:
            return
        if self.current is not None:
            write_text("\n\n" if len(self.questions) > 1 else "\n")
        self.current = number
        if len(self.questions) > 1:
            write_text(f"Q: {self.questions[number]}\n")

    def finish(self) -> None:
        if self.current is not None:
            write_text("\n")


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --------------------------------------------------------------------------------------------
# caption
# --------------------------------------------------------------------------------------------


@app.command(no_args_is_help=True)
def caption(
    ctx: typer.Context,
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            show_default=False,
            help="Files, folders (each video/image inside is one input) or '-' (paths from stdin).",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            show_default=False,
            rich_help_panel=OUTPUT_PANEL,
            help="JSON Lines file: one record per input, appended; rerunning resumes it. Only a new file or "
            "a longllava results file is accepted. '-': stream to stdout (no resume).",
        ),
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The instruction given for every input.")] = (
        DEFAULT_CAPTION_PROMPT
    ),
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N",
            show_default=False,
            help="Only the K-th of N disjoint parts of the inputs (K in 1..N, by a hash of each path).",
        ),
    ] = None,
    retry_errors: Annotated[
        bool,
        typer.Option(
            "--retry-errors/--keep-errors",
            rich_help_panel=OUTPUT_PANEL,
            help="On resume, redo inputs whose record is an error (else keep the error and skip them).",
        ),
    ] = True,
    model: ModelOption = None,
    vision_tower: VisionTowerOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    chunk_tokens: ChunkTokensOption = DEFAULT_CHUNK_TOKENS,
    memory_budget: MemoryBudgetOption = None,
    frames: FramesOption = DEFAULT_FRAMES,
    fps: FpsOption = None,
    max_frames: MaxFramesOption = MAX_FRAMES,
    start: StartOption = None,
    end: EndOption = None,
    tiles: TilesOption = False,
    tile_size: TileSizeOption = None,
    max_tiles: MaxTilesOption = DEFAULT_MAX_TILES,
    recursive: RecursiveOption = False,
    backend: BackendOption = Backend.auto,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    temperature: TemperatureOption = 0.0,
    top_p: TopPOption = 1.0,
    top_k: TopKOption = 0,
    seed: SeedOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Caption many inputs into a JSON Lines file: resumable, shardable, one line per input.

    [dim]longllava caption videos/ -o captions.jsonl --shard 1/4[/dim]
    """
    from longllava_cli.caption import check_output_not_input, expand_inputs, parse_shard, run_captions, select_shard
    from longllava_cli.jsonl import ResultsFile, ResultsStream, check_results_path, is_success

    to_stdout = output == "-"
    if not to_stdout:
        check_results_path(output)  # before any work: a file we did not write is never touched
    try:
        part = parse_shard(shard) if shard else None
    except ValueError as e:
        raise BadParameter(str(e), param_hint="--shard") from e
    sampling = _sampling_options(
        ctx,
        frames=frames,
        fps=fps,
        max_frames=max_frames,
        start=start,
        end=end,
        tiles=tiles,
        tile_size=tile_size,
        max_tiles=max_tiles,
        recursive=recursive,
        backend=backend,
    )
    generation = _generation_options(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed
    )
    check_not_urls(inputs)
    paths = expand_inputs(inputs, recursive=recursive)
    if not to_stdout:
        check_output_not_input(output, paths)
    model_request = _model_request(model, device=device, dtype=dtype, vision_tower=vision_tower)
    budget = _memory_budget(memory_budget)
    if part is not None:
        paths = select_shard(paths, *part)
    keep = is_success if retry_errors else (lambda record: True)
    with ResultsStream() if to_stdout else ResultsFile(output, keep=keep) as results:
        todo = [p for p in paths if p not in results.done]
        if todo:
            with status(f"loading {model_request.path}"):
                loaded = library.load_model(model_request)

            def caption_one(path: str) -> dict[str, Any]:
                request = AskRequest(
                    inputs=(path,), questions=(prompt,), sampling=sampling, generation=generation,
                    chunk_tokens=chunk_tokens, memory_budget=budget,
                )  # fmt: skip
                return caption_record(path, library.ask(loaded, request))

            summary = run_captions(paths, results, caption_one, describe_failure=lambda e: describe_error(e)[0])
        else:
            summary = None
        failed = len(results.failed.intersection(paths))
    written = f"{summary.succeeded} captioned, {summary.failed} failed" if summary else "nothing to do"
    note(f"caption: {written}; {len(paths)} inputs, {failed} with errors in {'stdout' if to_stdout else output}")
    if summary is not None and summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


def caption_record(path: str, result: Any) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------


@app.command(no_args_is_help=True)
def frames(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(metavar="PATH", show_default=False, help="Videos, images or folders ('-': from stdin)."),
    ],
    model: ModelOption = None,
    frames: FramesOption = DEFAULT_FRAMES,
    fps: FpsOption = None,
    max_frames: MaxFramesOption = MAX_FRAMES,
    start: StartOption = None,
    end: EndOption = None,
    tiles: TilesOption = False,
    tile_size: TileSizeOption = None,
    max_tiles: MaxTilesOption = DEFAULT_MAX_TILES,
    recursive: RecursiveOption = False,
    backend: BackendOption = Backend.auto,
    json: JsonOption = False,
    contact_sheet: Annotated[
        Path | None,
        typer.Option(
            "--contact-sheet",
            dir_okay=False,
            show_default=False,
            rich_help_panel=OUTPUT_PANEL,
            help="Also write a grid image (PNG, JPEG...) of the sampled frames labelled with their timestamps.",
        ),
    ] = None,
    columns: Annotated[
        int, typer.Option("--columns", min=1, rich_help_panel=OUTPUT_PANEL, help="Contact sheet: pictures per row.")
    ] = 8,
    thumb_width: Annotated[
        int,
        typer.Option("--thumb-width", min=16, rich_help_panel=OUTPUT_PANEL, help="Contact sheet: cell width (px)."),
    ] = 192,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Show what the model would see: sampled frames, timestamps, tiles and token counts (no model run).

    [dim]longllava frames talk.mp4 --frames 16 --contact-sheet sheet.png[/dim]
    """
    from longllava_cli.checkpoint import summarize_checkpoint

    summary = summarize_checkpoint(_model_path(model))  # config.json only: what `ask` would plan for
    if summary.vision is None:
        raise UsageError(f"{summary.path} is a text-only model: it takes no frames")
    options = _sampling_options(
        ctx,
        frames=frames,
        fps=fps,
        max_frames=max_frames,
        start=start,
        end=end,
        tiles=tiles,
        tile_size=tile_size,
        max_tiles=max_tiles,
        recursive=recursive,
        backend=backend,
        image_size=summary.vision.image_size,
    )
    inputs = _read_paths(paths)
    sheet = None
    if contact_sheet is not None:
        from longllava_cli.contact_sheet import check_sheet_path

        sheet = _SheetRequest(contact_sheet, check_sheet_path(contact_sheet, inputs), columns, thumb_width)
    require_stdout()
    _describe_frames(inputs, options, summary, sheet, json=json)


@dataclass(frozen=True)
class _SheetRequest:
    """Where (checked, before any decoding) and how to draw the contact sheet."""

    path: Path
    image_format: str
    columns: int
    thumb_width: int


def _describe_frames(
    inputs: list[str], options: SamplingOptions, summary: Any, sheet: _SheetRequest | None, *, json: bool
) -> None:
    from longllava_cli.frames_table import describe_plans, print_plans
    from sampling import plan_inputs

    plans = plan_inputs(inputs, options)
    description = describe_plans(plans, tokens_per_image=summary.tokens_per_image, model=summary)
    if sheet is not None:
        from longllava_cli.contact_sheet import render_contact_sheet, save_sheet

        with status(f"writing {sheet.path}"):
            picture = render_contact_sheet(plans, options, columns=sheet.columns, thumb_width=sheet.thumb_width)
            save_sheet(picture, sheet.path, sheet.image_format)
        description["contact_sheet"] = {"path": str(sheet.path), "width": picture.width, "height": picture.height}
    if json:
        write_json(description)
    else:
        print_plans(description)


# --------------------------------------------------------------------------------------------
# info / estimate
# --------------------------------------------------------------------------------------------


@app.command()
def info(
    model: ModelOption = None,
    vision_tower: VisionTowerOption = None,
    json: JsonOption = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """The environment (torch, devices, CUDA kernels, video decoders) and a model's summary.

    [dim]longllava info --model ~/models/LongLLaVA-9B[/dim]
    """
    from longllava_cli.report import describe_environment, print_info

    data: dict[str, Any] = {"environment": describe_environment()}
    if model is not None:
        from longllava_cli.checkpoint import summarize_checkpoint

        data["model"] = summarize_checkpoint(model, vision_tower=vision_tower).to_dict()
    if json:
        write_json(data)
    else:
        print_info(data)


@app.command()
def estimate(
    model: ModelOption = None,
    vision_tower: VisionTowerOption = None,
    frames: FramesOption = DEFAULT_FRAMES,
    gpu_memory: Annotated[
        str | None,
        typer.Option(
            "--gpu-memory",
            metavar="SIZE",
            show_default=False,
            help="Memory budget, e.g. 24GB or 80GiB (binary units; a bare number is GiB). Default: the CUDA "
            "device's memory, else the machine's RAM (CPU run).",
        ),
    ] = None,
    dtype: DtypeOption = Dtype.auto,
    chunk_tokens: ChunkTokensOption = DEFAULT_CHUNK_TOKENS,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    json: JsonOption = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Memory for N frames: whether it fits, the most frames that fit, the chunk size to use.

    [dim]longllava estimate --model ~/models/LongLLaVA-9B --frames 512 --gpu-memory 24GB[/dim]
    """
    from longllava_cli.checkpoint import estimate_request, parse_size, summarize_checkpoint
    from longllava_cli.report import default_budget, print_estimate

    model = _model_path(model)
    try:
        budget = parse_size(gpu_memory) if gpu_memory else None
    except ValueError as e:
        raise BadParameter(str(e), param_hint="--gpu-memory") from e
    device, source = ("cuda", "--gpu-memory") if budget else (None, None)
    if budget is None:
        budget, device, source = default_budget()
    summary = summarize_checkpoint(model, vision_tower=vision_tower)
    if summary.vision is None:
        raise UsageError(f"{model} is a text-only model: it takes no frames")
    result = estimate_request(
        summary,
        num_frames=frames,
        budget=budget,
        dtype=summary.dtype if dtype == Dtype.auto else dtype.value,
        chunk_tokens=chunk_tokens,
        max_new_tokens=max_new_tokens,
        device=device,
    )
    result["budget_source"] = source
    if json:
        write_json(result)
    else:
        print_estimate(result)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="longllava")
