"""keras-hub preset handles of the package's pretrained weights, derived from the registry.

Every `WeightsPreset` of `keras_inception.registry` is the keras-hub preset
`<model>_<preset>` (`inception_resnet_v2_imagenet`, `facenet_vggface2`, ...), read from
the registry each time (a replaced registry entry, e.g. a mirror, is followed), and
`hf://timm/<model>.<tag>` names a timm checkpoint on the Hugging Face hub: the preset
whose `hf_repo` it is, or one made for it when its `<model>` is a network that the
package's timm converter reads. Their weights come once through the package's own
loader (download, hash check, conversion, cache; `keras_inception.presets`) into their
keras-hub preset directories (`preset_dirs`), never through keras-hub's converters,
which refuse timm's Inception checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from keras_inception.registry import (
    WeightsPreset,
    all_presets,
    get_spec,
    model_names,
)

HF_PREFIX = "hf://"
TIMM_OWNER = "timm/"
# What the scheme of a remote handle names, for the messages.
HOSTS = {"hf": "the Hugging Face hub", "kaggle": "Kaggle", "modelscope": "ModelScope"}

T = TypeVar("T")


def preset_name(entry: WeightsPreset) -> str:
    """The keras-hub name of a registry preset: `<model>_<preset>`.

    Args:
        entry: a preset of `keras_inception.registry`.

    Returns:
        The name, e.g. `"inception_resnet_v2_imagenet_ens_adv"`.
    """
    return f"{entry.model}_{entry.name}"


def named_presets() -> dict[str, WeightsPreset]:
    """Every registry preset by its keras-hub name (`preset_name`), in registry order."""
    return {preset_name(entry): entry for entry in all_presets()}


def timm_models() -> list[str]:
    """The networks whose timm checkpoints the package's converter reads (those with a
    timm naming table, `keras_inception.convert.naming`)."""
    from keras_inception.convert.naming import TIMM, naming_tables

    tables = naming_tables(TIMM)
    return [name for name in model_names() if name in tables]


def hf_handles() -> list[str]:
    """The `hf://timm/...` handles that registry presets name (their `hf_repo`)."""
    return [HF_PREFIX + entry.hf_repo for entry in all_presets() if entry.hf_repo]


# The parameter count of `InceptionBackbone(architecture)` (any geometry, image size and
# dtype), as keras-hub's preset tables give it (`metadata["params"]`), known without
# building the network; `tests/test_keras_hub_presets.py` checks it against `count_params()`.
BACKBONE_PARAMS = {
    "inception_v4": 41_174_400,
    "inception_resnet_v1": 20_976_848,
    "inception_resnet_v2": 54_336_736,
    "facenet": 22_578_384,
}


def table_metadata(entry: WeightsPreset) -> dict[str, Any]:
    """A preset's `"metadata"` in keras-hub's preset tables (`cls.presets[name]`)."""
    return {
        "description": entry.description,
        "source": entry.source,
        "license": entry.license,
        "architecture": entry.model,
        "params": BACKBONE_PARAMS.get(entry.model),
        "path": "keras_inception",
    }


def preset_table() -> dict[str, dict[str, Any]]:
    """The named presets in keras-hub's preset-table layout (`{name: {"metadata": ...}}`)."""
    return {name: {"metadata": table_metadata(entry), "kaggle_handle": None}
            for name, entry in named_presets().items()}


def unknown_preset_message(preset: Any) -> str:
    """The error message for a handle that names no preset, listing those that exist.

    Args:
        preset: the handle that was given.
    """
    return (
        f"Unknown preset {preset!r}. Available presets: {', '.join(named_presets())}. "
        f"Also: the Hugging Face handles {', '.join(hf_handles())} (or any "
        f"hf://timm/<model>.<tag> of {', '.join(timm_models())}), a local preset directory "
        "written by `save_to_preset`, or a kaggle:// or hf:// handle of such a directory."
    )


def timm_preset(repo: str) -> WeightsPreset:
    """The preset of the timm checkpoint `repo` (`"timm/inception_v4.tf_in1k"`).

    A registry preset whose `hf_repo` is `repo` (of any owner), else one made for a
    `timm/<model>.<tag>` repository, with the input size, crop and interpolation of the
    network's first registry preset. Either way its weights are converted once into the
    package's cache (`keras_inception.presets.hub`).

    Args:
        repo: the Hugging Face repository, `timm/<model>.<tag>` or a preset's `hf_repo`.

    Raises:
        ValueError: `<model>` is not a network whose timm checkpoints the package reads.
    """
    for entry in all_presets():
        if entry.hf_repo == repo:
            return entry
    model, _, tag = repo[len(TIMM_OWNER):].partition(".")
    if model not in timm_models():
        raise ValueError(unknown_preset_message(HF_PREFIX + repo))
    spec = get_spec(model)
    base = spec.presets[0] if spec.presets else WeightsPreset(
        model=model, name="", source="", description="", license="")
    return dataclasses.replace(
        base,
        name="timm_" + re.sub(r"\W", "_", tag or "default"),
        source=f"timm {repo} on the Hugging Face hub, converted",
        description=f"{spec.title}, timm checkpoint {repo}",
        license=f"see https://huggingface.co/{repo}",
        top=None, notop=None, hf_repo=repo, hf_filename="model.safetensors", revision="main",
        source_format="timm", pip_requirement=None, pip_member=None,
    )


def resolve_preset(preset: Any) -> WeightsPreset | None:
    """The registry preset a keras-hub handle names, or None for one keras-hub loads.

    Args:
        preset: a preset name (`"inception_v4_imagenet"`), an `hf://timm/...` handle,
            or what keras-hub's `from_preset` takes (a local preset directory, a
            `kaggle://` handle, an `hf://` handle that no registry preset names).

    Returns:
        The `WeightsPreset`, or None when keras-hub's own loader is to load `preset`.

    Raises:
        ValueError: `preset` is none of these; the message lists the presets.
    """
    if not isinstance(preset, (str, os.PathLike)):
        raise ValueError(unknown_preset_message(preset))
    preset = os.fspath(preset)
    named = named_presets()
    if preset in named:
        return named[preset]
    repo = preset[len(HF_PREFIX):] if preset.startswith(HF_PREFIX) else None
    if repo is not None and (repo.startswith(TIMM_OWNER) or repo in {e.hf_repo for e in named.values()}):
        return timm_preset(repo)
    if "://" in preset or os.path.isdir(preset):
        return None
    raise ValueError(unknown_preset_message(preset))


def converter_config(entry: WeightsPreset) -> dict[str, Any]:
    """The `InceptionImageConverter` arguments of a preset: size, crop, interpolation and
    FaceNet's standardisation.

    Args:
        entry: the preset.
    """
    return {
        "image_size": (entry.input_size, entry.input_size),
        "crop_pct": entry.crop_pct,
        "interpolation": entry.interpolation,
        "standardization": entry.standardization,
    }


def build_network(entry: WeightsPreset, include_top: bool) -> Any:
    """The package's network holding the weights of `entry`, loaded by the package's
    loader (downloaded or converted once, then cached).

    Args:
        entry: the preset (a registry preset, or one of `timm_preset`).
        include_top: whether to load the classification head too (classifiers only;
            FaceNet's networks always carry their embedding head).

    Returns:
        A `keras.Model` built by the network's builder.
    """
    from keras_inception.presets import hub

    spec = get_spec(entry.model)
    registered = entry in spec.presets
    kwargs: dict[str, Any] = {"weights": entry.name if registered else None}
    if entry.embedding is None:  # a classifier's weights
        kwargs.update(include_top=include_top, classes=entry.classes, classifier_activation=None)
    else:
        kwargs["embedding_dim"] = entry.embedding.embedding_dim
    network = spec.builder(**kwargs)
    if not registered:
        hub.load_converted(network, entry, include_top=include_top)
    return network


def check_keywords(where: str, kwargs: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """Refuses a keyword argument that `where` would otherwise drop silently (a Keras
    functional model ignores unknown ones).

    Args:
        where: the callable, for the message (`"InceptionBackbone.from_preset"`).
        kwargs: the keyword arguments received.
        accepted: the names `where` takes.

    Raises:
        ValueError: naming the unknown arguments and the accepted ones.
    """
    accepted = list(accepted)
    unknown = [name for name in kwargs if name not in accepted]
    if unknown:
        raise ValueError(f"{where} received unknown keyword argument(s) "
                         f"{', '.join(f'{name}={kwargs[name]!r}' for name in unknown)}; "
                         f"accepted: {', '.join(accepted)}.")


def network_failure(error: BaseException) -> str | None:
    """`"<type>: <message>"` of the deepest connection error (DNS, refused, timeout) in
    `error`'s chain of causes, or None when there is none."""
    kinds: tuple[type, ...] = (ConnectionError, TimeoutError, socket.gaierror)
    requests = sys.modules.get("requests")
    if requests is not None:
        kinds += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    found, seen = None, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, kinds):
            found = error
        error = error.__cause__ or error.__context__
    return None if found is None else f"{type(found).__name__}: {' '.join(str(found).split())}"


def _unreachable_message(preset: str, reason: str) -> str:
    scheme = preset.split("://", 1)[0].lower()
    host = HOSTS.get(scheme, f"the {scheme}:// host")
    return f"Cannot load the preset {preset!r}: {host} cannot be reached ({reason})."


def _check_hf_reachable(preset: str) -> None:
    """Raises ConnectionError at once when the preset's config.json is neither in the
    Hugging Face cache nor downloadable (offline, no network): keras-hub would retry for
    about 25 s, then report the preset as having no config.json."""
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        return  # keras-hub says what to install
    repo = preset[len(HF_PREFIX):]
    try:
        huggingface_hub.hf_hub_download(repo, "config.json", local_files_only=True)
        return
    except Exception:
        pass  # not in the cache
    if constants.HF_HUB_OFFLINE:
        raise ConnectionError(_unreachable_message(
            preset, f"HF_HUB_OFFLINE is set, and the cache {constants.HF_HUB_CACHE} holds no "
                    f"config.json of {repo}"))
    from keras_inception.presets.hub import _unreachable

    reason = _unreachable(constants.ENDPOINT)
    if reason is not None:
        raise ConnectionError(_unreachable_message(
            preset, f"{constants.ENDPOINT}: {reason}; the cache {constants.HF_HUB_CACHE} holds "
                    f"no config.json of {repo}"))


def load_with_keras_hub(preset: str, load: Callable[[], T]) -> T:
    """`load()`, keras-hub's own loading of `preset` (a preset directory, a `kaggle://` or
    `hf://` handle), with one line for a remote handle that cannot be reached.

    Raises:
        ConnectionError: the handle's host cannot be reached (offline, no network); the
            message names the handle.
    """
    remote = "://" in preset
    if preset.startswith(HF_PREFIX):
        _check_hf_reachable(preset)
    try:
        return load()
    except Exception as e:
        reason = network_failure(e) if remote else None
        if reason is None:
            raise
        raise ConnectionError(_unreachable_message(preset, reason)) from None
