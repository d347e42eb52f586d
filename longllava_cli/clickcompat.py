"""The Click that Typer runs on. Typer >= 0.23 ships its own copy of Click as `typer._click`;
older Typer uses the `click` package. Contexts, parameters and exceptions must come from the one
Typer uses (an exception from the other copy would be treated as a crash), so they come from here."""

from __future__ import annotations

try:
    from typer._click import core as _core
    from typer._click import exceptions as _exceptions
except ImportError:  # Typer < 0.23
    from click import core as _core  # type: ignore[no-redef]
    from click import exceptions as _exceptions  # type: ignore[no-redef]

ClickException = _exceptions.ClickException
UsageError = _exceptions.UsageError
BadParameter = _exceptions.BadParameter
Context = _core.Context
Parameter = _core.Parameter
ParameterSource = _core.ParameterSource

__all__ = ["BadParameter", "ClickException", "Context", "Parameter", "ParameterSource", "UsageError"]
