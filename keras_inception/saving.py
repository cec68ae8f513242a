"""Loading saved `.keras` models, and the class names saved beside a trained one."""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

# Written by `keras-inception train` next to `best.keras`: the names of the outputs.
CLASS_NAMES_FILE = "class_names.json"
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


def read_class_names(model_path: str | os.PathLike) -> list[str] | None:
    """The class names saved next to a trained model file, if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))), CLASS_NAMES_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [str(name) for name in json.load(f)]


__all__ = ["CLASS_NAMES_FILE", "WEIGHTS_MEMBER", "NotAKerasArchiveError", "load_model",
           "load_weights", "read_class_names"]
