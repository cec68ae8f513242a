"""The named metadata entries of a `.tflite` flatbuffer, where exported files carry their
`keras_inception.metadata.ModelMetadata`.

The TFLite schema gives every model a list of named metadata entries (`Model.metadata`:
a name and the index of a buffer holding bytes); the converter writes its own
(`min_runtime_version`, `CONVERSION_METADATA`) there, and LiteRT runtimes skip the
names they do not know. `export_tflite` adds one entry, named `METADATA_KEY`, whose
buffer holds the metadata's JSON text (UTF-8), and `keras_inception.metadata.
read_tflite_metadata` reads it back: from the flatbuffer, without an interpreter and
without importing TensorFlow or Keras. This module knows bytes only (the metadata module
builds on it, not the reverse).

For a quantized model with integer input (`input_type="uint8"` / `"int8"`),
`input_scaling` still says what the real-valued input means (e.g. "inception": [-1, 1]);
the input tensor's quantization (scale, zero point) says how those values are encoded,
and `keras_inception.export.runtime` applies both.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any

# The file identifier of a TFLite flatbuffer (`schema.fbs`: file_identifier "TFL3").
TFLITE_IDENTIFIER = b"TFL3"
# Where the fields read here live in their tables: schema.fbs gives each field an id that
# never changes (old files stay readable), and a table's vtable holds field `id` at byte
# 4 + 2 * id. Model: buffers (id 4), metadata (id 6); Metadata: name (0), buffer (1);
# Buffer: data (0), offset (1), size (2).
_MODEL_BUFFERS, _MODEL_METADATA = 12, 16
_METADATA_NAME, _METADATA_BUFFER = 4, 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 4, 6, 8


def with_entry(flatbuffer: bytes, name: str, data: bytes) -> bytes:
    """The TFLite flatbuffer `flatbuffer` with the metadata entry `name` holding `data`
    (added, or replaced); its graph and buffers are unchanged."""
    from keras_inception import _compat

    return _compat.tflite_with_metadata(flatbuffer, name, data, TFLITE_IDENTIFIER)


def _tables(flatbuffer: Any, table: Any, field: int) -> list[Any]:
    """The tables of the vector `field` of `table` (none when the field is absent)."""
    from flatbuffers.table import Table

    offset = table.Offset(field)
    if not offset:
        return []
    start = table.Vector(offset)
    return [Table(flatbuffer, table.Indirect(start + 4 * i)) for i in range(table.VectorLen(offset))]


def _scalar(table: Any, field: int, flags: Any) -> int:
    offset = table.Offset(field)
    return table.Get(flags, table.Pos + offset) if offset else 0


def _buffer_bytes(flatbuffer: Any, buffer: Any) -> bytes:
    """A `Buffer` table's bytes: its `data` vector, or (files over 2 GB) the `size` bytes at
    `offset` in the file (0 and 1 mean "no offset" in the schema)."""
    from flatbuffers.number_types import Uint64Flags

    offset = _scalar(buffer, _BUFFER_OFFSET, Uint64Flags)
    if offset > 1:
        return bytes(flatbuffer[offset:offset + _scalar(buffer, _BUFFER_SIZE, Uint64Flags)])
    data = buffer.Offset(_BUFFER_DATA)
    if not data:
        return b""
    start = buffer.Vector(data)
    return bytes(flatbuffer[start:start + buffer.VectorLen(data)])


def metadata_entries(flatbuffer: Any) -> dict[str, bytes]:
    """`{name: bytes}` of every metadata entry of a TFLite flatbuffer (bytes, or an `mmap`
    of the file), the converter's included, read in place with the public `flatbuffers`
    runtime and schema.fbs' field ids. A ValueError for data that is not a TFLite model."""
    import flatbuffers
    from flatbuffers.number_types import Uint32Flags
    from flatbuffers.table import Table

    if len(flatbuffer) < 8 or not flatbuffers.util.BufferHasIdentifier(
            flatbuffer, 0, TFLITE_IDENTIFIER):
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    model = Table(flatbuffer, flatbuffers.encode.Get(flatbuffers.packer.uoffset, flatbuffer, 0))
    buffers = _tables(flatbuffer, model, _MODEL_BUFFERS)
    entries = {}
    for entry in _tables(flatbuffer, model, _MODEL_METADATA):
        name_field = entry.Offset(_METADATA_NAME)
        name = entry.String(entry.Pos + name_field).decode("utf-8", "replace") if name_field else ""
        index = _scalar(entry, _METADATA_BUFFER, Uint32Flags)
        if index >= len(buffers):
            raise ValueError(f"metadata {name!r} points to buffer {index} of {len(buffers)}")
        entries[name] = _buffer_bytes(flatbuffer, buffers[index])
    return entries


def read_tflite_entries(path: str | os.PathLike) -> dict[str, bytes]:
    """`metadata_entries` of the `.tflite` file at `path` (mapped, not read whole).

    FileNotFoundError for a missing file; a one-line ValueError naming the file for one
    that is empty, truncated or not a TFLite flatbuffer.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TFLite model not found: path={path!r}.")
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return metadata_entries(view)
    except (ValueError, IndexError, OSError, struct.error) as e:
        raise ValueError(f"Cannot read the metadata of {path!r}: {e or 'damaged file'} "
                         "(is it a TFLite model?).") from None


__all__ = ["TFLITE_IDENTIFIER", "metadata_entries", "read_tflite_entries", "with_entry"]
