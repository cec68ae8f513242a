"""Public names imported on first use (PEP 562), for the package and its subpackages:
`import keras_inception` (and the command line's parser) must not pay for Keras or
TensorFlow until a name that needs them is used."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any


def lazy_exports(
    module_name: str, exports: dict[str, str], submodules: Iterable[str] = (),
    moved: dict[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for the module `module_name`.

    `exports` maps a public name to the module defining it (absolute, or relative to
    `module_name` without a leading dot); `submodules` are importable as attributes.
    A name is imported once, then cached in the module's globals. `moved` maps an old
    submodule name to its new one: the old name still works as an attribute
    (`from keras_inception import facenet`), with a DeprecationWarning.
    """
    submodules = tuple(submodules)
    moved = dict(moved or {})

    def __getattr__(name: str) -> Any:  # noqa: N807  (the PEP 562 hook)
        if name in exports:
            source = exports[name]
            if not source.startswith("keras_inception"):
                source = f"{module_name}.{source}"
            value = getattr(importlib.import_module(source), name)
        elif name in submodules:
            value = importlib.import_module(f"{module_name}.{name}")
        elif name in moved:
            warnings.warn(f"{module_name}.{name} is now {module_name}.{moved[name]}; the old name "
                          "will be removed in a later release.", DeprecationWarning, stacklevel=2)
            return importlib.import_module(f"{module_name}.{moved[name]}")  # warns at each use
        else:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        setattr(sys.modules[module_name], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*vars(sys.modules[module_name]), *exports, *submodules})

    return __getattr__, __dir__
