"""Pretrained weights: the table of presets, download, hub conversion and loading.

The presets themselves are declared with each network (`keras_inception.models.*`,
`ModelSpec.presets`) and read through `keras_inception.registry`; this package
fetches and loads them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from keras_inception.presets.fetch import WeightsDownloadError, cache_dir, download, file_hash
from keras_inception.presets.loader import load_preset, load_weights_file
from keras_inception.registry import (
    EmbeddingPreset,
    RemoteFile,
    WeightsPreset,
    all_presets,
    get_spec,
)


def get_preset(model_name: str, name: str) -> WeightsPreset:
    """The preset `name` of the network `model_name`."""
    return get_spec(model_name).preset(name)


def preset_names(model_name: str) -> list[str]:
    return get_spec(model_name).preset_names


def list_weights(print_table: bool = True) -> list[dict[str, Any]]:
    """The table of pretrained presets (source, license, input size, crop, ...)."""
    rows = []
    for entry in all_presets():
        row = dataclasses.asdict(entry)
        # An embedding preset's facts stay columns of the table (empty for a classifier's).
        row.update(row.pop("embedding") or dict.fromkeys(
            field.name for field in dataclasses.fields(EmbeddingPreset)))
        for key in ("top", "notop"):
            row[key] = row[key]["url"] if row[key] else None
        rows.append(row)
    if print_table:
        columns = ["model", "name", "source", "revision", "license", "input_size", "crop_pct",
                   "interpolation", "preprocessing"]
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
        print("  ".join(c.ljust(widths[c]) for c in columns))
        for r in rows:
            print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))
    return rows


__all__ = [
    "RemoteFile",
    "WeightsDownloadError",
    "WeightsPreset",
    "cache_dir",
    "download",
    "file_hash",
    "get_preset",
    "list_weights",
    "load_preset",
    "load_weights_file",
    "preset_names",
]
