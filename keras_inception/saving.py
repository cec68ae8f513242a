"""Loading saved `.keras` models, and the class names saved beside a trained or exported one."""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

# Written by `keras-inception train` next to `best.keras`: the names of the outputs.
# (Exports before `CLASS_NAMES_SUFFIX` wrote it beside the exported file too.)
CLASS_NAMES_FILE = "class_names.json"
# Written by `keras-inception export` beside each exported file or SavedModel folder, under
# the file's own name: `irv2.tflite` -> `irv2.tflite.class_names.json`.
CLASS_NAMES_SUFFIX = ".class_names.json"
# The member of a `.keras` archive that holds the weights (the `save_weights` layout).
WEIGHTS_MEMBER = "model.weights.h5"


def load_model(path: str | os.PathLike, **kwargs: Any) -> Any:
    """`keras.saving.load_model` with one-line errors that name the file.

    The package's layers are registered as soon as Keras and `keras_inception` are both
    imported (`keras_inception._registration`), so Keras' own `load_model` reads the
    package's files too; this one adds the errors: a missing file, or one that is not a
    `.keras` zip archive (damaged, truncated), is one ValueError / FileNotFoundError line.
    """
    import keras

    import keras_inception.layers  # noqa: F401  (registered already; explicit for readers)

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file not found: {path!r}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"Cannot read {path!r} as a .keras model: it is not a zip archive (damaged, "
            "truncated or another format). Save the model again with model.save(path)."
        )
    try:
        return keras.saving.load_model(path, **kwargs)
    except (zipfile.BadZipFile, OSError, KeyError, EOFError, ValueError, TypeError) as e:
        detail = str(e).splitlines()[0][:300] if str(e) else "damaged archive"
        raise ValueError(
            f"Cannot load {path!r} as a .keras model ({type(e).__name__}: {detail}). If the "
            "file is damaged, save the model again with model.save(path)."
        ) from None


class NotAKerasArchiveError(ValueError):
    """A zip archive given as a `.keras` model that holds no model weights."""


def load_weights(model: Any, path: str | os.PathLike) -> None:
    """Loads the layer weights of a `.keras` archive (or a weights file) into `model`.

    Keras' own `model.load_weights("x.keras")` reads the archive's `model.weights.h5`
    in place inside the zip, where every backward seek restarts the member: about 27 s
    for Inception-ResNet-v2 on 2 cores. Here that member is first copied out to a
    temporary `.weights.h5` file (the same layout `save_weights` writes) and loaded
    from there (under a second). Optimizer state in the archive is not loaded.
    """
    import tempfile
    import warnings

    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        model.load_weights(path)
        return
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as folder:
        if WEIGHTS_MEMBER not in archive.namelist():
            raise NotAKerasArchiveError(
                f"Cannot read weights from {path!r}: the archive holds no {WEIGHTS_MEMBER} "
                "(not a .keras model file).")
        weights = archive.extract(WEIGHTS_MEMBER, folder)  # keeps its `.weights.h5` name
        with warnings.catch_warnings():
            # The archive's optimizer state is not for the model's current optimizer.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(weights)


class ClassNamesWarning(UserWarning):
    """A folder's shared `class_names.json` does not fit the model beside it, and is not used."""


def class_names_path(model_path: str | os.PathLike) -> str:
    """Where the class names of the file (or SavedModel folder) at `model_path` belong:
    beside it, under its own name plus `.class_names.json`."""
    return os.path.abspath(os.fspath(model_path)) + CLASS_NAMES_SUFFIX


def _load_names(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            names = json.load(f)
    except OSError as e:
        raise OSError(f"Cannot read the class names {path!r}: {e.strerror}.") from None
    except ValueError as e:
        raise ValueError(f"Cannot read the class names {path!r}: not JSON ({e}).") from None
    if not isinstance(names, list) or not names:
        raise ValueError(f"The class names {path!r} hold no list of names (a JSON list is "
                         "expected, one name per output).")
    return [str(name) for name in names]


def read_class_names(model_path: str | os.PathLike,
                     num_outputs: int | None = None) -> list[str] | None:
    """The class names of the model file (or SavedModel folder) at `model_path`, if any.

    1. Its own names, `FILE.class_names.json` beside it (`class_names_path`), written by
       `keras-inception export`. With `num_outputs`, a file whose count differs is a
       ValueError naming it.
    2. Else the folder's `class_names.json` (written by `train` beside `best.keras`, and
       by exports of earlier versions, which several exported files may share). With
       `num_outputs`, it is used only if it has that many names; otherwise a
       `ClassNamesWarning` says so and None is returned (the caller's default names).
    3. Else None.
    """
    own = class_names_path(model_path)
    if os.path.isfile(own):
        names = _load_names(own)
        if num_outputs is not None and len(names) != num_outputs:
            raise ValueError(
                f"The class names {own!r} hold {len(names)} names, but the model has "
                f"{num_outputs} outputs: write one name per output there, or remove it."
            )
        return names
    shared = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))),
                          CLASS_NAMES_FILE)
    if not os.path.isfile(shared):
        return None
    names = _load_names(shared)
    if num_outputs is not None and len(names) != num_outputs:
        import warnings

        warnings.warn(
            f"Not using {shared!r}: it holds {len(names)} class names, but "
            f"{os.fspath(model_path)!r} has {num_outputs} outputs (the names of another "
            "model?); using the default names (class_<i>; ImageNet's for 1000 outputs). "
            f"Put this model's names in {own!r}.",
            ClassNamesWarning, stacklevel=2)
        return None
    return names


__all__ = ["CLASS_NAMES_FILE", "CLASS_NAMES_SUFFIX", "WEIGHTS_MEMBER", "ClassNamesWarning",
           "NotAKerasArchiveError", "class_names_path", "load_model", "load_weights",
           "read_class_names"]
