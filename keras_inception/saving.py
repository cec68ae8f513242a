"""Loading saved `.keras` models, and the class names saved beside a trained or exported one."""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

from keras_inception._registration import (
    KERAS_HUB_INSTALL_HINT,
    KERAS_HUB_MODULE,
    import_keras_hub_family,
    keras_hub_installed,
)

# Written by `keras-inception train` next to `best.keras`: the names of the outputs.
# (Exports before `CLASS_NAMES_SUFFIX` wrote it beside the exported file too.)
CLASS_NAMES_FILE = "class_names.json"
# Written by `keras-inception export` beside each exported file or SavedModel folder, under
# the file's own name: `irv2.tflite` -> `irv2.tflite.class_names.json`.
CLASS_NAMES_SUFFIX = ".class_names.json"
# The member of a `.keras` archive that holds the weights (the `save_weights` layout).
WEIGHTS_MEMBER = "model.weights.h5"


def _archive_modules(path: str) -> tuple[str | None, set[str]]:
    """(class name of the model, the modules of every class) named by the `config.json`
    of the `.keras` archive at `path`; (None, empty) when it has none (Keras says why)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return None, set()
    modules: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("module"), str):
                modules.add(value["module"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(config)
    name = config.get("class_name") if isinstance(config, dict) else None
    return (name if isinstance(name, str) else None), modules


def _register_keras_hub_classes(path: str) -> None:
    """Makes the keras-hub classes that the archive at `path` names loadable: imports the
    package's keras-hub family when it names one of its classes (Keras imports keras-hub's
    own modules itself, but not the package's).

    Raises:
        ImportError: the archive needs keras-hub, which is not installed; one line with
            the install command.
    """
    name, modules = _archive_modules(path)
    family = {m for m in modules if m == KERAS_HUB_MODULE or m.startswith(KERAS_HUB_MODULE + ".")}
    if not family and not any(m.split(".")[0] == "keras_hub" for m in modules):
        return
    if not keras_hub_installed():
        raise ImportError(f"Cannot load {path!r}: it holds a keras-hub model ({name}), and "
                          f"keras-hub is not installed; install it with: {KERAS_HUB_INSTALL_HINT}")
    if family:
        import_keras_hub_family()


def load_model(path: str | os.PathLike, **kwargs: Any) -> Any:
    """`keras.saving.load_model` with one-line errors that name the file.

    The package's layers are registered as soon as Keras and `keras_inception` are both
    imported (`keras_inception._registration`), so Keras' own `load_model` reads the
    package's files too; this one also imports the package's keras-hub family when the
    archive holds one of its models (an `InceptionImageClassifier` saved to `.keras`), and
    adds the errors: a missing file, one that is not a `.keras` zip archive (damaged,
    truncated), or one that needs keras-hub where it is not installed, is one
    FileNotFoundError / ValueError / ImportError line.
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
    _register_keras_hub_classes(path)
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


class SidecarWarning(UserWarning):
    """A model's meaning was read from files beside it (an older version's `class_names.json`
    or run folder) instead of from the model file itself."""


def model_metadata(model: Any, path: str | os.PathLike | None = None, *,
                   recorded_crop_pct: float | None = None) -> tuple[Any, str | None]:
    """What the Keras `model` (loaded from `path`) means, and a note for the user, if any.

    1. The metadata the model carries (`keras_inception.metadata`): no note.
    2. Else what its structure tells plus the defaults (`infer_metadata`); for a file
       written by an older version, the class names saved beside it
       (`read_class_names`) and `recorded_crop_pct` (the crop its training run
       recorded, read by the caller) with a `SidecarWarning`. The note names what
       was assumed.
    """
    import warnings

    from keras_inception.metadata import assumed_line, infer_metadata

    metadata, assumed = infer_metadata(model)
    if not assumed:
        return metadata, None
    source = repr(os.fspath(path)) if path is not None else f"model {model.name!r}"
    read_beside = []
    if path is not None and metadata.is_classifier:
        names = read_class_names(path, int(model.output_shape[-1]))
        if names is not None:
            metadata = metadata.replace(class_names=tuple(names))
            assumed.remove("class_names")
            read_beside.append("class names")
    if recorded_crop_pct is not None and "crop_pct" in assumed:
        metadata = metadata.replace(crop_pct=float(recorded_crop_pct))
        assumed.remove("crop_pct")
        read_beside.append(f"crop_pct {recorded_crop_pct:g}")
    if read_beside:
        warnings.warn(f"{source} carries no keras_inception metadata (an older version's file): "
                      f"read its {' and '.join(read_beside)} from the files beside it. Save it "
                      "again with keras_inception.metadata.describe to keep them in the file.",
                      SidecarWarning, stacklevel=2)
    return metadata, assumed_line(assumed, metadata, source) if assumed else None


__all__ = ["CLASS_NAMES_FILE", "CLASS_NAMES_SUFFIX", "WEIGHTS_MEMBER", "ClassNamesWarning",
           "NotAKerasArchiveError", "class_names_path", "load_model", "load_weights",
           "model_metadata", "read_class_names", "SidecarWarning"]
