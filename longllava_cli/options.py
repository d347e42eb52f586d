"""Every option of the CLI, declared once as an `Annotated` alias and shared by the commands.

A parameter's name is its config-file key (`--chunk-tokens` ↔ `chunk_tokens`). Defaults are
written here as literals, not imported, because importing `sampling` or `model` pulls in torch
and `--help` must stay instant; tests/longllava_cli/test_options.py checks they equal the
library's. → huggingface_hub `cli/_cli_utils.py`.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from longllava_cli import output
from longllava_cli.clickcompat import Context, Parameter
from longllava_cli.config import CONFIG_ENV, load_config_callback

MODEL_ENV = "LONGLLAVA_MODEL"
CACHE_DIR_ENV = "LONGLLAVA_CACHE_DIR"

# Defaults mirrored from the library (checked by tests).
DEFAULT_FRAMES = 128  # sampling.options.DEFAULT_NUM_FRAMES
MAX_FRAMES = 1024  # sampling.options.MAX_FRAMES
DEFAULT_MAX_TILES = 100  # sampling.options.DEFAULT_MAX_TILES
DEFAULT_CHUNK_TOKENS = 2048  # model.api.RunOptions.chunk_tokens
# A prefill chunk preallocates chunk_tokens x hidden_size activations: 64K positions is already
# 1 GiB at LongLLaVA-9B's width in bfloat16, and more than any prompt of 1024 frames needs per step.
MAX_CHUNK_TOKENS = 65536
# More decoding threads than this is a typo (each holds a decoder and a few frames).
MAX_DECODE_WORKERS = 256
DEFAULT_MAX_NEW_TOKENS = 768  # model.engine.GenerationOptions.max_new_tokens
DEFAULT_TOKENS_PER_IMAGE = 144  # 24×24 CLIP patches pooled 2×2 (docs/format.md, Vision)
DEFAULT_CAPTION_PROMPT = "Describe what you see in detail."

MODEL_PANEL = "Model"
SAMPLING_PANEL = "Sampling"
GENERATION_PANEL = "Generation"
OUTPUT_PANEL = "Output"


class Dtype(str, enum.Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Quantize(str, enum.Enum):
    none = "none"
    int8 = "int8"
    nf4 = "nf4"


class Backend(str, enum.Enum):
    auto = "auto"
    pyav = "pyav"
    decord = "decord"
    opencv = "opencv"


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar=CONFIG_ENV,
        is_eager=True,
        callback=load_config_callback,
        dir_okay=False,
        show_default=False,
        help="YAML file of option defaults (keys are option names). "
        "Default: $LONGLLAVA_CONFIG, else ~/.config/longllava/config.yaml if it exists.",
    ),
]

# --- model ------------------------------------------------------------------------------------
# A string, not a Path: a repo id (`ORG/NAME@REV`) is not a path, and Path would drop what tells a
# folder apart from one (`./org/name`); `build.model_path` makes folders Paths.
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="DIR|ORG/NAME[@REV]",
        envvar=MODEL_ENV,
        show_default=False,
        rich_help_panel=MODEL_PANEL,
        help="LongLLaVA checkpoint folder (config.json, *.safetensors, tokenizer.json), or a Hugging Face repo id "
        "found in the local cache (`longllava pull` downloads one; nothing else is fetched). "
        "Default: $LONGLLAVA_MODEL, then `model` in the config file.",
    ),
]
VisionTowerOption = Annotated[
    Path | None,
    typer.Option(
        "--vision-tower",
        show_default=False,
        rich_help_panel=MODEL_PANEL,
        help="CLIP vision tower folder, for checkpoints that do not include the tower's weights. Default: the one "
        "in the checkpoint.",
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", rich_help_panel=MODEL_PANEL, help="Where to run: auto (CUDA if available), cpu, cuda, cuda:N."
    ),
]
DtypeOption = Annotated[
    Dtype,
    typer.Option(
        "--dtype",
        case_sensitive=False,
        rich_help_panel=MODEL_PANEL,
        help="Weight dtype; auto takes the checkpoint's own (torch_dtype in config.json).",
    ),
]
QuantizeOption = Annotated[
    Quantize,
    typer.Option(
        "--quantize",
        case_sensitive=False,
        rich_help_panel=MODEL_PANEL,
        help="Weight-only quantisation of the attention, MLP and MoE expert layers while loading: int8 "
        "(torchao) or nf4 (bitsandbytes); Mamba, lm_head, vision tower and projector stay in --dtype. "
        'Needs pip install -e ".[quant]".',
    ),
]
ChunkTokensOption = Annotated[
    int,
    typer.Option(
        "--chunk-tokens",
        min=1,
        max=MAX_CHUNK_TOKENS,
        rich_help_panel=MODEL_PANEL,
        help="LM positions per prefill chunk: memory for activations grows with it.",
    ),
]

MemoryBudgetOption = Annotated[
    str | None,
    typer.Option(
        "--memory-budget",
        metavar="SIZE",
        show_default=False,
        rich_help_panel=MODEL_PANEL,
        help="Refuse, before any work, a request the memory model says needs more than SIZE (e.g. 20GB; "
        "binary units). Default: the CUDA device's memory, else the machine's RAM.",
    ),
]

# --- the state cache ---------------------------------------------------------------------------
CACHE_PANEL = "State cache"
DEFAULT_CACHE_SIZE = "20GB"  # model.request.DEFAULT_CACHE_SIZE, 20 GiB
CacheOption = Annotated[
    bool,
    typer.Option(
        "--cache/--no-cache",
        rich_help_panel=CACHE_PANEL,
        help="Save the state after the inputs, and load it when a later question has the same inputs, model and "
        "settings (no decoding, encoding or prefill). The answer is the same either way.",
    ),
]
CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        metavar="DIR",
        envvar=CACHE_DIR_ENV,
        file_okay=False,
        show_default=False,
        rich_help_panel=CACHE_PANEL,
        help="Folder of saved states. Default: $LONGLLAVA_CACHE_DIR, then `cache_dir` in the config file, else "
        "$XDG_CACHE_HOME/longllava/states (~/.cache/longllava/states).",
    ),
]
CacheSizeOption = Annotated[
    str,
    typer.Option(
        "--cache-size",
        metavar="SIZE",
        rich_help_panel=CACHE_PANEL,
        help="Most disk the saved states may take (e.g. 20GB, 500MB; binary units); the least recently used "
        "go first.",
    ),
]

# --- sampling ---------------------------------------------------------------------------------
FramesOption = Annotated[
    int,
    typer.Option(
        "--frames",
        "-n",
        min=1,
        max=MAX_FRAMES,
        rich_help_panel=SAMPLING_PANEL,
        help="Frames spread evenly over each video (or images over each folder).",
    ),
]
FpsOption = Annotated[
    float | None,
    typer.Option(
        "--fps",
        show_default=False,
        rich_help_panel=SAMPLING_PANEL,
        help="Sample this many frames per second instead of --frames, capped at --max-frames. Default: off.",
    ),
]
MaxFramesOption = Annotated[
    int,
    typer.Option(
        "--max-frames", min=1, max=MAX_FRAMES, rich_help_panel=SAMPLING_PANEL, help="Most frames --fps may take."
    ),
]
StartOption = Annotated[
    float | None,
    typer.Option(
        "--start",
        min=0.0,
        show_default=False,
        rich_help_panel=SAMPLING_PANEL,
        help="Start of each video (seconds). Default: the beginning.",
    ),
]
EndOption = Annotated[
    float | None,
    typer.Option(
        "--end",
        show_default=False,
        rich_help_panel=SAMPLING_PANEL,
        help="End of each video (seconds). Default: the end.",
    ),
]
TilesOption = Annotated[
    bool,
    typer.Option(
        "--tiles/--no-tiles",
        rich_help_panel=SAMPLING_PANEL,
        help="High-resolution images: the whole picture plus a grid of tiles at native resolution.",
    ),
]
TileSizeOption = Annotated[
    int | None,
    typer.Option(
        "--tile-size",
        min=1,
        show_default=False,
        rich_help_panel=SAMPLING_PANEL,
        help="Tile side in pixels (default: the model's image size, 336).",
    ),
]
MaxTilesOption = Annotated[
    int, typer.Option("--max-tiles", min=1, rich_help_panel=SAMPLING_PANEL, help="Most tiles one image may take.")
]
RecursiveOption = Annotated[
    bool,
    typer.Option("--recursive/--no-recursive", "-r", rich_help_panel=SAMPLING_PANEL, help="Walk subfolders too."),
]
BackendOption = Annotated[
    Backend,
    typer.Option(
        "--backend",
        case_sensitive=False,
        rich_help_panel=SAMPLING_PANEL,
        help="Video decoder; auto tries pyav, decord, opencv in turn. A named backend is the only one used: if it "
        "cannot read a file, that is an error. Animated GIF/WebP/APNG are always decoded by Pillow.",
    ),
]
DecodeWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--decode-workers",
        min=1,
        max=MAX_DECODE_WORKERS,
        metavar="N",
        show_default=False,
        rich_help_panel=SAMPLING_PANEL,
        help="Threads decoding and preprocessing frames: files, and the GOPs of a video, side by side. The frames "
        "are the same for any N. Default: the CPU cores, at most 8.",
    ),
]

# --- generation -------------------------------------------------------------------------------
MaxNewTokensOption = Annotated[
    int,
    typer.Option("--max-new-tokens", min=1, rich_help_panel=GENERATION_PANEL, help="Longest answer, in tokens."),
]
TemperatureOption = Annotated[
    float,
    typer.Option("--temperature", min=0.0, rich_help_panel=GENERATION_PANEL, help="0 is greedy; above 0 samples."),
]
TopPOption = Annotated[
    float,
    typer.Option(
        "--top-p",
        max=1.0,
        rich_help_panel=GENERATION_PANEL,
        help="Nucleus sampling: keep the most likely tokens up to this probability.",
    ),
]
TopKOption = Annotated[
    int,
    typer.Option(
        "--top-k", min=0, rich_help_panel=GENERATION_PANEL, help="Sample among the k most likely tokens (0: all)."
    ),
]
SeedOption = Annotated[
    int | None,
    typer.Option(
        "--seed",
        show_default=False,
        rich_help_panel=GENERATION_PANEL,
        help="Random seed for reproducible sampling. Default: none.",
    ),
]

# --- output -----------------------------------------------------------------------------------


def _set_verbosity(ctx: Context, param: Parameter, value: int | bool) -> int | bool:
    """`-v` / `--quiet` after the command name (or from the config file) act like before it."""
    if ctx.resilient_parsing:  # shell completion
        return value
    if param.name == "verbose":
        output.configure(verbose=int(value))
    else:
        output.configure(quiet=bool(value))
    return value


_VERBOSE_HELP = "More log lines on stderr (-vv: debug, FFmpeg's own messages included)."
_QUIET_HELP = "Only errors on stderr: no notes, warnings, spinner or progress."
VerboseOption = Annotated[
    int,
    typer.Option(
        "--verbose", "-v", count=True, callback=_set_verbosity, rich_help_panel=OUTPUT_PANEL, help=_VERBOSE_HELP
    ),
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", callback=_set_verbosity, rich_help_panel=OUTPUT_PANEL, help=_QUIET_HELP)
]
# `ask` keeps -q for --question (documented before --quiet existed).
QuietLongOption = Annotated[
    bool, typer.Option("--quiet", callback=_set_verbosity, rich_help_panel=OUTPUT_PANEL, help=_QUIET_HELP)
]
JsonOption = Annotated[
    bool, typer.Option("--json", rich_help_panel=OUTPUT_PANEL, help="Write one JSON object to stdout.")
]
ChatJsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        rich_help_panel=OUTPUT_PANEL,
        help="One JSON object per answer, a line each: question, answer, tokens, finish_reason, turn, cache.",
    ),
]
StreamOption = Annotated[
    bool,
    typer.Option("--stream", rich_help_panel=OUTPUT_PANEL, help="Write the answer as it is generated."),
]
