"""The `metadata_props` of an ONNX model file (string keys and values), where exported files
carry their `keras_inception.metadata.ModelMetadata` under `METADATA_KEY`
(`keras_inception.metadata.read_onnx_metadata` reads it). This module knows strings only
(the metadata module builds on it, not the reverse)."""

from __future__ import annotations

import os
from typing import Any

# What installs the optional packages of ONNX export and reading.
ONNX_EXTRA = "pip install 'keras_inception[onnx]'"


def _import_onnx(purpose: str) -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(f"{purpose} needs the optional package onnx; install it with: "
                          f"{ONNX_EXTRA}.") from None
    return onnx


def append_metadata_props(path: str | os.PathLike, props: dict[str, str]) -> None:
    """Adds `props` to the `metadata_props` of the ONNX model at `path` by appending a
    `ModelProto` that holds only those entries: protobuf parsers merge concatenated
    messages (repeated fields are appended), so the model is not parsed and written again
    (its weights would be copied in memory once more)."""
    onnx = _import_onnx("Writing ONNX metadata")
    entries = [onnx.StringStringEntryProto(key=k, value=v) for k, v in props.items()]
    with open(os.fspath(path), "ab") as file:
        file.write(onnx.ModelProto(metadata_props=entries).SerializeToString())


def read_metadata_props(path: str | os.PathLike) -> dict[str, str]:
    """`{key: value}` of the `metadata_props` of the ONNX model at `path` (the last value of
    a key given twice). Needs the `onnx` package (the `onnx` extra).

    FileNotFoundError for a missing file; a one-line ValueError naming the file for one
    that is not an ONNX model.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model not found: path={path!r}.")
    onnx = _import_onnx(f"Reading {path!r}")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # noqa: BLE001  (protobuf's DecodeError: damaged or foreign files)
        raise ValueError(f"Cannot read the metadata of {path!r}: not an ONNX model "
                         f"({type(e).__name__}).") from None
    return {prop.key: prop.value for prop in model.metadata_props}


__all__ = ["ONNX_EXTRA", "append_metadata_props", "read_metadata_props"]
