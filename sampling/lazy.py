"""Package exports resolved on first use (PEP 562): a package's `__init__` names its public
objects and the modules they live in, and importing the package itself costs nothing. Used by
`sampling` and `model`, so that `import sampling.errors` or `model.request` loads neither torch nor
a video decoder."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package`: `exports` maps each public name to its module; a
    name is imported on first access and then kept in the package's `namespace`."""

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(exports)

    return getattr_, dir_
