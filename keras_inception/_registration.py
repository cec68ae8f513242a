"""Registers the package's Keras classes as soon as the library they build on is imported,
in either order, without importing that library itself.

`keras.saving.load_model("best.keras")` finds a custom class only if it is registered
(`keras.saving.register_keras_serializable`), and Keras auto-imports only its own
packages; `import keras_inception` must stay light (no Keras, no TensorFlow: the command
line's `--help` is instant). So `install()`, called by `keras_inception/__init__.py`, for
each library of `REGISTRATIONS`:

* `keras`: imports `keras_inception.layers` (the package's layers);
* `keras_hub`: imports `keras_inception.keras_hub` (the keras-hub model family: its
  classes, and its presets by name for keras-hub's base classes), so that keras-hub's
  `from_preset(directory)` and `keras.saving.load_model` read the family's files after
  `import keras_inception` alone;

at once if the library is already imported; otherwise `_ImportHook` goes first on
`sys.meta_path`: when the library is imported later, the hook lets the usual finder find
it, wraps its loader, and runs the registration right after the library's module has
finished executing. The hook removes itself once every library has been seen. Nothing
else about the import of those libraries changes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# The module holding every registered layer of the package.
LAYERS_MODULE = "keras_inception.layers"
# The keras-hub model family (the `keras-hub` extra), and how to install what it needs.
KERAS_HUB_MODULE = "keras_inception.keras_hub"
KERAS_HUB_INSTALL_HINT = 'pip install "keras_inception[keras-hub]"'
# imported library -> the module of the package that registers its classes with it
REGISTRATIONS = {"keras": LAYERS_MODULE, "keras_hub": KERAS_HUB_MODULE}


def keras_hub_installed() -> bool:
    """Whether keras-hub can be imported (without importing it)."""
    if "keras_hub" in sys.modules:
        return sys.modules["keras_hub"] is not None
    return importlib.util.find_spec("keras_hub") is not None


def import_keras_hub_family() -> ModuleType:
    """Imports `keras_inception.keras_hub` (registering the family's classes and presets).

    Raises:
        ImportError: keras-hub is not installed; the message holds the install command.
    """
    return importlib.import_module(KERAS_HUB_MODULE)


def register(library: str) -> None:
    """Imports the module that registers the package's classes with `library`."""
    try:
        importlib.import_module(REGISTRATIONS[library])
    except Exception as e:  # never break the import of the library for the user
        warnings.warn(f"keras_inception could not register its classes with {library} "
                      f"({type(e).__name__}: {e}); import {REGISTRATIONS[library]} to see why.",
                      stacklevel=2)


def register_layers() -> None:
    """Imports the module that registers the package's layers with Keras."""
    register("keras")


class _RegisteringLoader(importlib.abc.Loader):
    """A library's own loader, plus `register(library)` once its module has run."""

    def __init__(self, loader: Any, library: str) -> None:
        self._loader = loader
        self._library = library

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # The library's module looks as if it had been imported without this wrapper.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        register(self._library)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader that the other finders give a library of
    `pending` (each once)."""

    def __init__(self, pending: set[str]) -> None:
        self.pending = pending

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)  # one use; also keeps the search below from recursing
        if not self.pending:
            uninstall()
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find and finder is not self else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader, fullname)
        return spec


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ImportHook)]


def _imported(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None),
                                              "_initializing", False)


def install() -> None:
    """Registers the package's classes with each library of `REGISTRATIONS` now if it is
    imported, else when it is."""
    hooks = [f for f in sys.meta_path if isinstance(f, _ImportHook)]
    pending = hooks[0].pending if hooks else set()
    for library in REGISTRATIONS:
        if _imported(library):
            pending.discard(library)
            register(library)
        else:
            pending.add(library)
    if pending and not hooks:
        sys.meta_path.insert(0, _ImportHook(pending))
    elif not pending:
        uninstall()
