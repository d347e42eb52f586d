"""The `longllava` command line: ask, chat, caption, frames, info, estimate, pull, models, cache.

Each command parses its options (Typer, the shared aliases of `options.py`), builds the library's
request objects from them (`build.py`: precedence of flags over the config file, usage errors),
calls one library function and writes the result (`answer.py`, `caption_job.py`,
`frames_table.py`, `report.py`): stdout for results (text, one JSON object, JSON Lines), stderr for
everything else. torch and the library are imported inside the commands
so `longllava --help` is instant. Errors go through `errors.report_errors` (one line, exit code).
→ fastapi/fastapi-cli `src/fastapi_cli/cli.py`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from longllava_cli import build, output
from longllava_cli.clickcompat import Context, UsageError
from longllava_cli.errors import exit_with_code, report_errors
from longllava_cli.optional_value import OptionalValueCommand
from longllava_cli.options import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_CAPTION_PROMPT,
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_FRAMES,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MAX_TILES,
    MAX_FRAMES,
    OUTPUT_PANEL,
    Backend,
    BackendOption,
    CacheDirOption,
    CacheOption,
    CacheSizeOption,
    ChatJsonOption,
    ChunkTokensOption,
    ConfigOption,
    DecodeWorkersOption,
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
    Quantize,
    QuantizeOption,
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
from longllava_cli.output import note, require_stdout

RAY_PANEL = "Scaling out"


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
    epilog="Exit codes: 0 ok, 1 runtime failure (bad media, bad checkpoint, model not downloaded, download failed, "
    "out of memory), 2 usage error, "
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
# Commands: parse (the signature) -> request (build) -> call -> write
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
    quantize: QuantizeOption = Quantize.none,
    chunk_tokens: ChunkTokensOption = DEFAULT_CHUNK_TOKENS,
    memory_budget: MemoryBudgetOption = None,
    cache: CacheOption = True,
    cache_dir: CacheDirOption = None,
    cache_size: CacheSizeOption = DEFAULT_CACHE_SIZE,
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
    decode_workers: DecodeWorkersOption = None,
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
    json, stream = build.output_mode(ctx)
    request = build.ask_request(ctx, paths, questions)
    spec = build.model_spec(ctx)
    _check_paths_exist(request.inputs)  # before a model load that may take minutes
    require_stdout()
    from longllava_cli.answer import answer

    answer(spec, request, json=json, stream=stream)


@app.command(no_args_is_help=True)
def chat(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(metavar="PATH...", show_default=False, help="Videos, images or folders to talk about."),
    ],
    model: ModelOption = None,
    vision_tower: VisionTowerOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quantize: QuantizeOption = Quantize.none,
    chunk_tokens: ChunkTokensOption = DEFAULT_CHUNK_TOKENS,
    memory_budget: MemoryBudgetOption = None,
    cache: CacheOption = True,
    cache_dir: CacheDirOption = None,
    cache_size: CacheSizeOption = DEFAULT_CACHE_SIZE,
    decode_workers: DecodeWorkersOption = None,
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
    json: ChatJsonOption = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Talk about videos, images and folders: the inputs are read once, follow-ups see earlier answers.

    On a terminal: a prompt with line editing and history, answers streamed as they come.

    Commands: /reset (back to the state after the inputs), /frames, /save FILE (JSON transcript), /exit.

    Piped: one question per line in, one answer per line out (newlines inside as \\n), or --json lines.

    [dim]printf 'Who speaks first?\\nWhat does she hold?\\n' | longllava chat talk.mp4 --json[/dim]
    """
    request = build.chat_request(ctx, paths)
    spec = build.model_spec(ctx)
    _check_paths_exist(request.inputs)  # before a model load that may take minutes
    require_stdout()
    from longllava_cli.chat import run_chat

    code = run_chat(spec, request, json=json)
    if code:
        raise typer.Exit(code)


@app.command(no_args_is_help=True, cls=OptionalValueCommand)
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
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            show_default=False,
            rich_help_panel=RAY_PANEL,
            help="Caption on a Ray cluster: alone, a local one on this machine; 'auto' or HOST:PORT, the cluster "
            "`ray start` runs; ray://HOST:PORT through Ray Client. Every node must see the inputs at the same paths.",
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            "--actors",
            min=1,
            show_default=False,
            rich_help_panel=RAY_PANEL,
            help="With --ray: model copies (actors). Default: one per GPU, else one per 2 CPUs.",
        ),
    ] = None,
    gpus_per_actor: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-actor",
            min=0,
            show_default=False,
            rich_help_panel=RAY_PANEL,
            help="With --ray: GPUs each actor reserves. Default: 1 on clusters with GPUs, else 0.",
        ),
    ] = None,
    model: ModelOption = None,
    vision_tower: VisionTowerOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = Dtype.auto,
    quantize: QuantizeOption = Quantize.none,
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
    decode_workers: DecodeWorkersOption = None,
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
    [dim]longllava caption /shared/videos/ -o captions.jsonl --ray auto[/dim]
    """
    from longllava_cli.caption_job import CaptionJob, check_output, report, run_job, select_inputs

    check_output(output)  # before any work: a file we did not write is never touched
    settings = build.ray_settings(ctx)
    paths = select_inputs(inputs, output=output, shard=shard, recursive=recursive)
    request, spec = build.ask_request(ctx, [], [prompt]), build.model_spec(ctx)
    job = CaptionJob(output, paths, request, spec, retry_errors, settings)
    summary, failed = run_job(job)
    report(job, summary, failed)


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
    decode_workers: DecodeWorkersOption = None,
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
    from longllava_cli.contact_sheet import check_sheet_path
    from longllava_cli.frames_table import SheetRequest, show_frames
    from model.summary import summarize_checkpoint

    summary = summarize_checkpoint(build.model_path(model))  # config.json only: what `ask` would plan for
    if summary.vision is None:
        raise UsageError(f"{summary.path} is a text-only model: it takes no frames")
    options = build.sampling_options(ctx, image_size=summary.vision.image_size)
    inputs = build.read_paths(paths)
    sheet = None
    if contact_sheet is not None:
        sheet = SheetRequest(contact_sheet, check_sheet_path(contact_sheet, inputs), columns, thumb_width)
    require_stdout()
    show_frames(inputs, options, summary, sheet, json=json, decode_workers=build.decode_workers(ctx))


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
    from longllava_cli.report import show_info

    require_stdout()
    show_info(model, vision_tower, json=json)


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
    quantize: QuantizeOption = Quantize.none,
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
    from longllava_cli.report import show_estimate

    budget = build.parse_size_option(gpu_memory, "--gpu-memory") if gpu_memory else None
    require_stdout()
    show_estimate(
        build.model_path(model),
        vision_tower,
        num_frames=frames,
        budget=budget,
        dtype=None if dtype == Dtype.auto else dtype.value,
        quantize=quantize.value,
        chunk_tokens=chunk_tokens,
        max_new_tokens=max_new_tokens,
        json=json,
    )


@app.command(no_args_is_help=True)
def pull(
    repo: Annotated[
        str,
        typer.Argument(
            metavar="ORG/NAME[@REVISION]",
            show_default=False,
            help="Hugging Face repo id, optionally @ a branch, tag or commit (default: the main branch).",
        ),
    ],
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Download a model from the Hugging Face Hub: only the files longllava reads.

    config.json, the safetensors weights and their index and the tokenizer files go into the standard Hugging
    Face cache (HF_HOME, HF_HUB_CACHE), where other Hugging Face tools see them too. Prints the local folder;
    afterwards --model ORG/NAME finds it with no network. Progress on stderr (--quiet: none).

    [dim]longllava pull FreedomIntelligence/LongLLaVA-9B[/dim]
    """
    from longllava_cli.download import pull as download

    require_stdout()
    download(repo)


@app.command()
def models(json: JsonOption = False, verbose: VerboseOption = 0, quiet: QuietOption = False) -> None:
    """The models on this machine: LongLLaVA repos in the Hugging Face cache, and the demo model.

    Each downloaded revision of a LongLLaVA or Jamba repo, with the refs pointing to it, its size on disk and
    whether the download is complete; then the built-in demo model.

    [dim]longllava models --json[/dim]
    """
    from longllava_cli.model_list import show_models

    require_stdout()
    show_models(json=json)


cache_app = typer.Typer(
    name="cache",
    help="The saved states of `ask`: list them, or delete them.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(cache_app)


@cache_app.command("ls")
def cache_ls(
    cache_dir: CacheDirOption = None,
    json: JsonOption = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """The saved states, most recently used first: key, size, last use, model and inputs.

    [dim]longllava cache ls[/dim]
    """
    from longllava_cli.cache_listing import show_states

    require_stdout()
    show_states(build.state_dir(cache_dir), json=json)


@cache_app.command("clear")
def cache_clear(
    cache_dir: CacheDirOption = None,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
    config: ConfigOption = None,
) -> None:
    """Delete every saved state (only files the cache wrote: anything else in the folder stays).

    [dim]longllava cache clear --cache-dir /data/states[/dim]
    """
    from longllava_cli.cache_listing import clear_states

    require_stdout()
    clear_states(build.state_dir(cache_dir))


def _check_paths_exist(paths: tuple[str, ...]) -> None:
    from sampling.errors import InputError, display_path

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


def main() -> None:
    """Console-script entry point (through `longllava_cli.entry`)."""
    app(prog_name="longllava")
