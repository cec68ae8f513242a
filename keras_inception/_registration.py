"""Registers the package's Keras layers as soon as both Keras and `keras_inception` are
imported, in either order, without importing Keras itself.

`keras.saving.load_model("best.keras")` finds a custom class only if it is registered
(`keras.saving.register_keras_serializable`), and Keras auto-imports only its own
packages; `import keras_inception` must stay light (no Keras, no TensorFlow: the command
line's `--help` is instant). So `install()`, called by `keras_inception/__init__.py`:

* imports `keras_inception.layers` at once if Keras is already imported;
* otherwise puts `_KerasImportHook` first on `sys.meta_path`: when `keras` is imported
  later, the hook lets the usual finder find it, wraps its loader, and imports
  `keras_inception.layers` right after the `keras` module has finished executing; the
  hook then removes itself. Nothing else about the import of Keras changes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# The module holding every registered class of the package.
LAYERS_MODULE = "keras_inception.layers"


def register_layers() -> None:
    """Imports the module that registers the package's layers with Keras."""
    try:
        importlib.import_module(LAYERS_MODULE)
    except Exception as e:  # never break `import keras` for the user
        warnings.warn(f"keras_inception could not register its Keras layers ({type(e).__name__}: "
                      f"{e}); keras_inception.load_model still registers them.", stacklevel=2)


class _RegisteringLoader(importlib.abc.Loader):
    """The `keras` module's own loader, plus `register_layers()` once it has run."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # Keras' module looks as if it had been imported without this wrapper.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        register_layers()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader that the other finders give `keras`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "keras":
            return None
        uninstall()  # one use; also keeps the search below from finding this hook
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _KerasImportHook)]


def install() -> None:
    """Registers the layers now if Keras is imported, else when it is."""
    keras = sys.modules.get("keras")
    if keras is not None and not getattr(getattr(keras, "__spec__", None), "_initializing", False):
        register_layers()
    elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())
