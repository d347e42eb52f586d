"""The YAML config file: defaults for any option, so users stop typing what they always type.

    # ~/.config/longllava/config.yaml
    model: ~/models/LongLLaVA-9B
    dtype: bfloat16
    frames: 256
    chunk_tokens: 4096

Where: `--config FILE`, else `$LONGLLAVA_CONFIG`, else `$XDG_CONFIG_HOME/longllava/config.yaml`
(`~/.config/longllava/config.yaml`), if it exists. Keys are option names with `_` or `-`
(`chunk_tokens`, `chunk-tokens`); one file serves every command, each taking the keys it has.
Precedence: command-line flag > environment variable (`LONGLLAVA_MODEL`) > config file > built-in
default. A key that no command has is a usage error naming it. Only `yaml.safe_load` is used.

Mechanism: the `--config` option is eager and its callback fills Click's `ctx.default_map`,
which Click consults for every option not given on the command line (and shows in `--help`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from longllava_cli.clickcompat import BadParameter, Context, Parameter

CONFIG_ENV = "LONGLLAVA_CONFIG"
APP_DIR = "longllava"
FILE_NAME = "config.yaml"
# Parameters a config file may not set: the config itself, and what only makes sense typed.
# A config file is a few lines; more than this is some other file given by mistake.
MAX_CONFIG_BYTES = 1 << 20
NOT_CONFIGURABLE = frozenset({"config", "help", "paths", "inputs", "args"})


def user_config_path() -> Path:
    """`$XDG_CONFIG_HOME/longllava/config.yaml`, `~/.config/longllava/config.yaml` by default."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / APP_DIR / FILE_NAME


def read_config(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file, keys normalised to parameter names (`-` → `_`).
    Raises BadParameter (a usage error) for unreadable, oversized, non-UTF-8, too deeply nested
    or malformed files."""
    try:
        with open(path, "rb") as f:  # a pipe (`--config <(...)`) works too; /dev/zero stops at the limit
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise BadParameter(f"cannot read {path}: {e.strerror or e}", param_hint="--config") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise BadParameter(f"{path} is over {MAX_CONFIG_BYTES // 2**20} MiB: not a config file", param_hint="--config")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadParameter(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8", param_hint="--config") from e
    except RecursionError as e:  # PyYAML composes nested collections recursively
        raise BadParameter(f"{path} is nested too deeply to be a config file", param_hint="--config") from e
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise BadParameter(f"{path} is not valid YAML: {detail}", param_hint="--config") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise BadParameter(
            f"{path} must be a mapping of option names to values, got {type(data).__name__}", param_hint="--config"
        )
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def configurable_names(commands: Iterable[Any]) -> set[str]:
    """Option names any of `commands` accepts from a config file."""
    return {
        param.name
        for command in commands
        for param in command.params
        if param.name and param.param_type_name == "option" and param.name not in NOT_CONFIGURABLE
    }


def load_config_callback(ctx: Context, param: Parameter, value: Path | None) -> Path | None:
    """Callback of the eager `--config` option: read the file and make it this command's defaults."""
    path = Path(value).expanduser() if value else user_config_path()
    if not value and not path.is_file():
        return None
    if ctx.resilient_parsing:  # shell completion: never fail on the config
        return value
    data = read_config(path)
    root = ctx.find_root().command
    commands = root.commands.values() if hasattr(root, "commands") else [root]
    known = configurable_names(commands)
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadParameter(
            f"unknown key {unknown[0]!r} in {path}; known keys: {', '.join(sorted(known))}", param_hint="--config"
        )
    own = {p.name for p in ctx.command.params if p.param_type_name == "option"}
    ctx.default_map = {**(ctx.default_map or {}), **{k: v for k, v in data.items() if k in own}}
    return path
