"""Public names imported on first use (PEP 562), for the package and its subpackages:
`import keras_inception` (and the command line's parser) must not pay for Keras or
TensorFlow until a name that needs them is used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any


def lazy_exports(
    module_name: str, exports: dict[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for the module `module_name`.

    `exports` maps a public name to the module defining it (absolute, or relative to
    `module_name` without a leading dot); `submodules` are importable as attributes.
    A name is imported once, then cached in the module's globals.
    """
    submodules = tuple(submodules)

    def __getattr__(name: str) -> Any:  # noqa: N807  (the PEP 562 hook)
        if name in exports:
            source = exports[name]
            if not source.startswith("keras_inception"):
                source = f"{module_name}.{source}"
            value = getattr(importlib.import_module(source), name)
        elif name in submodules:
            value = importlib.import_module(f"{module_name}.{name}")
        else:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        setattr(sys.modules[module_name], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*vars(sys.modules[module_name]), *exports, *submodules})

    return __getattr__, __dir__
