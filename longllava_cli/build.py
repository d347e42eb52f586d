"""Parsed options → the library's request objects (the "request" step of every command).

Each builder reads the command's parsed parameters from the Click context (`ctx.params`, whose
names are the option names and config keys) and where each came from: a flag given on the command
line replaces the config file's values it conflicts with (`--frames 8` over `fps: 1`), config keys
of a feature that is off are ignored (`tile_size` without `--tiles`), and two conflicting values
from one place are a usage error. Library ValueErrors (bad values) become usage errors too.
Heavy modules are imported inside the builders: `--help` never loads them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longllava_cli import backend as library
from longllava_cli.clickcompat import BadParameter, Context, ParameterSource, UsageError
from longllava_cli.options import DEFAULT_MAX_TILES, Dtype, Quantize
from longllava_cli.output import note
from longllava_cli.paths import check_not_urls, expand_dash

if TYPE_CHECKING:
    from longllava_cli.ray_plan import RaySettings
    from model.request import AskRequest, ChatRequest, GenerationOptions, ModelSpec, RunOptions
    from sampling import SamplingOptions

_PREFIXES = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgtKMGT]?)(i?[bB])?\s*$")
FRAMES_OR_FPS = "--frames and --fps are alternatives: give one (--max-frames caps --fps)"
JSON_OR_STREAM = "--stream writes text as it comes; it cannot be combined with --json"


def given(ctx: Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def configured(ctx: Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.DEFAULT_MAP


def winner(ctx: Context, first: str, second: str, conflict: str) -> str:
    """Of two set options that exclude each other, the one given on the command line: a flag
    replaces the config file's value it conflicts with. UsageError when both come from one place."""
    if given(ctx, first) != given(ctx, second):
        return first if given(ctx, first) else second
    where = "" if given(ctx, first) else f" (the config file {ctx.params.get('config') or ''} sets both)"
    raise UsageError(conflict + where)


def sampling_options(ctx: Context, *, image_size: int | None = None) -> SamplingOptions:
    """The command's sampling options (module docstring for the precedence rules)."""
    p = dict(ctx.params)
    if p.get("fps") is not None and (given(ctx, "frames") or configured(ctx, "frames")):
        p["fps"] = p["fps"] if winner(ctx, "fps", "frames", FRAMES_OR_FPS) == "fps" else None
    if not p.get("tiles"):
        if given(ctx, "tile_size") or given(ctx, "max_tiles"):
            raise UsageError("--tile-size and --max-tiles apply with --tiles")
        p["tile_size"], p["max_tiles"] = None, DEFAULT_MAX_TILES
    start, end = p.get("start"), p.get("end")
    if start is not None and end is not None and start >= end and given(ctx, "start") != given(ctx, "end"):
        p["start"], p["end"] = (start, None) if given(ctx, "start") else (None, end)
    from sampling import SamplingOptions

    fields: dict[str, Any] = {
        "num_frames": p["frames"],
        "fps": p["fps"],
        "max_frames": p["max_frames"],
        "start": p["start"],
        "end": p["end"],
        "tiles": p.get("tiles", False),
        "tile_size": p.get("tile_size"),
        "max_tiles": p.get("max_tiles", DEFAULT_MAX_TILES),
        "recursive": p.get("recursive", False),
        "backend": p["backend"].value,
    }
    if image_size:
        fields["image_size"] = image_size
    return _checked(SamplingOptions, fields)


def generation_options(ctx: Context) -> GenerationOptions:
    from model.request import GenerationOptions

    names = ("max_new_tokens", "temperature", "top_p", "top_k", "seed")
    return _checked(GenerationOptions, {name: ctx.params[name] for name in names})


def run_options(ctx: Context) -> RunOptions:
    """Chunking, decoding threads, the memory budget (--memory-budget, else the memory of the model's
    device) and the state cache (on for commands that have --cache, in --cache-dir or the user cache
    folder)."""
    from model.request import DEVICE_MEMORY, RunOptions

    size = ctx.params.get("memory_budget")
    budget = parse_size_option(size, "--memory-budget") if size else DEVICE_MEMORY
    fields = {"chunk_tokens": ctx.params["chunk_tokens"], "memory_budget": budget}
    if ctx.params.get("cache"):
        fields["cache_dir"] = state_dir(ctx.params.get("cache_dir"))
        fields["cache_size"] = parse_size_option(ctx.params["cache_size"], "--cache-size")
    return _checked(RunOptions, {**fields, "decode_workers": decode_workers(ctx)})


def state_dir(cache_dir: Path | str | None) -> Path:
    """--cache-dir (`~` expanded), else `$XDG_CACHE_HOME/longllava/states`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from model.state_store import default_state_dir

    return default_state_dir()


def decode_workers(ctx: Context) -> int:
    """--decode-workers, else the library's default (the CPU cores, capped)."""
    from sampling.parallel import default_decode_workers

    workers = ctx.params.get("decode_workers")
    return workers if workers is not None else default_decode_workers()


def ask_request(ctx: Context, inputs: list[str], questions: list[str], *, image_size: int | None = None) -> AskRequest:
    """The whole request: inputs (`-` read from stdin, URLs refused), questions, and settings."""
    from model.request import AskRequest

    if any(not q.strip() for q in questions):
        raise UsageError('a question is empty: ask something, e.g. "What happens in the video?"')
    fields = {
        "inputs": tuple(read_paths(inputs)),
        "questions": tuple(questions),
        "sampling": sampling_options(ctx, image_size=image_size),
        "generation": generation_options(ctx),
        "run": run_options(ctx),
    }
    return _checked(AskRequest, fields)


def chat_request(ctx: Context, inputs: list[str]) -> ChatRequest:
    """The conversation's inputs (URLs refused; not `-`: stdin holds the questions) and settings."""
    from model.request import ChatRequest

    if "-" in inputs:
        raise UsageError("chat reads its questions from stdin; give the paths as arguments, not '-'")
    check_not_urls(inputs)
    fields = {
        "inputs": tuple(inputs),
        "sampling": sampling_options(ctx),
        "generation": generation_options(ctx),
        "run": run_options(ctx),
    }
    return _checked(ChatRequest, fields)


def model_spec(ctx: Context) -> ModelSpec:
    """Which checkpoint to load, where and how; the device is checked here, before any loading."""
    from model.request import ModelSpec

    device = library.check_device(ctx.params["device"])  # before the demo note: the only news if mistyped
    dtype = ctx.params["dtype"]
    path = model_path(ctx.params["model"])
    if isinstance(path, str):  # a repo id: not downloaded is said now, not after the model's imports
        from model.hub import resolve_model

        resolve_model(path)
    return ModelSpec(
        path=path,
        device=device,
        dtype=None if dtype == Dtype.auto else dtype.value,
        vision_tower=ctx.params.get("vision_tower"),
        quantize=ctx.params.get("quantize", Quantize.none).value,
    )


def model_path(model: str | Path | None) -> Path | str:
    """The model to use: a folder as a Path (`~` expanded), or a Hugging Face repo id
    `ORG/NAME[@REVISION]` naming no existing path, as a string (the library finds it in the local
    cache); with none configured, the built-in demo model, announced on stderr."""
    if model is not None:
        from model.hub import model_reference

        return model_reference(model)
    from model.demo import DEMO_NOTICE, demo_model_dir

    demo = demo_model_dir()
    if demo is None:
        raise UsageError(
            "no model given: pass --model DIR (a LongLLaVA checkpoint folder) or --model ORG/NAME (a Hugging Face "
            "repo id, after `longllava pull ORG/NAME`), set LONGLLAVA_MODEL, or put `model: ...` in the config file"
        )
    note(DEMO_NOTICE)
    return demo


def ray_settings(ctx: Context) -> RaySettings | None:
    """`caption --ray [ADDRESS]` with its pool options, or None (caption in this process)."""
    from longllava_cli.ray_plan import RaySettings, check_ray_installed

    address, actors, gpus = ctx.params.get("ray"), ctx.params.get("actors"), ctx.params.get("gpus_per_actor")
    if address is None:
        if given(ctx, "actors") or given(ctx, "gpus_per_actor"):
            raise UsageError("--actors and --gpus-per-actor apply with --ray")
        return None
    settings = _checked(RaySettings, {"address": address, "actors": actors, "gpus_per_actor": gpus})
    check_ray_installed()
    return settings


def output_mode(ctx: Context) -> tuple[bool, bool]:
    """(json, stream) for `ask`: a flag replaces a conflicting config value."""
    json, stream = ctx.params["json"], ctx.params["stream"]
    if json and stream:
        json = winner(ctx, "json", "stream", JSON_OR_STREAM) == "json"
        stream = not json
    return json, stream


def read_paths(args: list[str]) -> list[str]:
    """`-` replaced by the paths read from stdin, one per line; URLs refused."""
    paths = expand_dash(args)
    check_not_urls(paths)
    return paths


def parse_size_option(text: str, option: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise BadParameter(str(e), param_hint=option) from e


def parse_size(text: str) -> int:
    """ "24GB", "24GiB", "80G", "512MB", "1000000000B", "24" (GiB) → bytes. K/M/G/T are binary
    (2^10, ...) with or without B / iB: GPU memory is sold and reported in binary units."""
    match = _SIZE.match(text)
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"cannot read {text!r} as a memory size; write e.g. 24GB, 80GiB or 512MB")
    number, prefix, byte = float(match[1]), match[2].lower(), match[3]
    scale = _PREFIXES[prefix] if prefix else (1 if byte else _PREFIXES["g"])
    return int(number * scale)


def _checked(kind: type, fields: dict[str, Any]) -> Any:
    """`kind(**fields)`, its ValueError (a value out of range) as a usage error."""
    try:
        return kind(**fields)
    except ValueError as e:
        raise UsageError(str(e)) from e
