"""The cache of presets converted from another format (timm, FaceNet's files).

A converted preset is written once as a `.weights.h5` in `fetch.cache_dir()`,
verified by loading it into a clone of the model, and recorded with its sha256 in a
`.sha256.json` beside it. A cached file is used only if that record matches, so a
truncated or foreign file is converted again instead of being trusted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import keras

from keras_inception.convert import save_weights_verified
from keras_inception.files import write_json_atomic
from keras_inception.presets.fetch import cache_dir, ensure_cache_dir, file_hash
from keras_inception.registry import WeightsPreset


def converted_path(entry: WeightsPreset, include_top: bool) -> str:
    """Where the converted weights of `entry` are cached."""
    suffix = "" if include_top else "_notop"
    return os.path.join(cache_dir(), f"{entry.model}_{entry.name}{suffix}.weights.h5")


def _record_path(weights_path: str) -> str:
    return weights_path + ".sha256.json"


def cached_file_is_valid(weights_path: str) -> bool:
    """Whether `weights_path` exists and has the sha256 recorded when it was converted."""
    record = _record_path(weights_path)
    if not (os.path.isfile(weights_path) and os.path.isfile(record)):
        return False
    try:
        with open(record, encoding="utf-8") as f:
            expected = json.load(f)["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return file_hash(weights_path, "sha256") == expected


def save_converted(model: keras.Model, entry: WeightsPreset, include_top: bool,
                   source: str = "") -> str:
    """Caches `model`'s weights as the converted file of `entry`, with its sha256 recorded."""
    ensure_cache_dir()  # an unusable $KERAS_INCEPTION_CACHE is named, not an [Errno N]
    target = converted_path(entry, include_top)
    save_weights_verified(model, target)
    write_json_atomic(_record_path(target), {"sha256": file_hash(target, "sha256"),
                                             "source": source})
    return target


def load_or_convert(model: keras.Model, entry: WeightsPreset, include_top: bool,
                    convert: Callable[[keras.Model], str]) -> str:
    """Loads the verified cached conversion of `entry` into `model`, or runs
    `convert(model)` (which fills the model and returns where the weights came from)
    and caches the result."""
    target = converted_path(entry, include_top)
    if cached_file_is_valid(target):
        model.load_weights(target)
        return target
    source = convert(model)
    return save_converted(model, entry, include_top, source=source)
