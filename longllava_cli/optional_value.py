"""Options whose value may be left out: `--ray` alone means `--ray local`, `--ray auto` joins a
cluster. Click takes an option's value from the next argument whatever it is (`--ray videos/`
would make the folder an address), and Typer has no optional values; so before parsing, an
option named in `OPTIONAL_VALUES` takes the next argument only when that argument is one of its
values, and its default value otherwise. `--ray=ADDRESS` is always explicit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typer.core import TyperCommand

from longllava_cli.clickcompat import Context
from longllava_cli.ray_plan import LOCAL, is_ray_address

# option → (its value when none is given, which next arguments are its value)
OPTIONAL_VALUES: dict[str, tuple[str, Callable[[str], bool]]] = {"--ray": (LOCAL, is_ray_address)}


def fill_optional_values(args: list[str]) -> list[str]:
    """`args` with every bare optional-value option written as `--option=value`; arguments after
    `--` are left alone."""
    filled: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return filled + args[i:]
        if arg in OPTIONAL_VALUES:
            default, accepts = OPTIONAL_VALUES[arg]
            taken = i + 1 < len(args) and accepts(args[i + 1])
            filled.append(f"{arg}={args[i + 1] if taken else default}")
            i += 2 if taken else 1
            continue
        filled.append(arg)
        i += 1
    return filled


class OptionalValueCommand(TyperCommand):
    """A Typer command whose `OPTIONAL_VALUES` options may be given without a value."""

    def parse_args(self, ctx: Context, args: list[str]) -> Any:
        return super().parse_args(ctx, fill_optional_values(args))
