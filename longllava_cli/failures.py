"""The CLI's own error classes raised by modules loaded at start-up, kept apart so that `--help`
loads no library package: they derive from `sampling.errors.LongLLaVAError` (the one base of the
tool's errors), and are imported only when raised."""

from __future__ import annotations

from sampling.errors import LongLLaVAError


class StdoutClosedError(LongLLaVAError, OSError):
    """Standard output was closed before the command started (`>&-`)."""


class OutputPathError(LongLLaVAError, ValueError):
    """An output path the tool must not write (a usage error: nothing was read or written)."""


class RayClusterError(LongLLaVAError, RuntimeError):
    """`caption --ray` cannot run as asked: Ray missing, the cluster unreachable or without the
    GPUs asked for, or its actors unable to load the model."""
