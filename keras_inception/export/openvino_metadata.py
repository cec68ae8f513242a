"""The runtime information of an OpenVINO IR (`<rt_info>` of its `.xml`), where exported
models carry their `keras_inception.metadata.ModelMetadata` under `METADATA_KEY`
(`keras_inception.metadata.read_openvino_metadata` reads it).

OpenVINO writes `Model.set_rt_info(value, [name])` as `<net><rt_info><name value="..."/>`
(IR version 11, `openvino.save_model`). Read here with the standard library's XML parser:
no OpenVINO needed, cheap enough for the command line's checks before TensorFlow is
imported. This module knows strings only (the metadata module builds on it, not the
reverse)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree


def read_rt_info(path: str | os.PathLike) -> dict[str, str]:
    """The top-level entries of the IR's runtime information that hold a `value`, by name.

    FileNotFoundError for a missing file; a one-line ValueError naming the file for one
    that is not XML, or is XML but not an OpenVINO IR (`<net>` with `<layers>`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"OpenVINO model not found: path={path!r}.")
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, UnicodeDecodeError, ValueError) as e:
        reason = " ".join(str(e).split())
        raise ValueError(f"Cannot read {path!r} as an OpenVINO model: not an OpenVINO IR "
                         f"(.xml) file ({type(e).__name__}: {reason}).") from None
    if root.tag != "net" or root.find("layers") is None:
        raise ValueError(f"Cannot read {path!r} as an OpenVINO model: an XML file, but not an "
                         f"OpenVINO IR (its root is <{root.tag}>, not <net> with <layers>).")
    info = root.find("rt_info")
    return {} if info is None else {entry.tag: entry.get("value") for entry in info
                                    if entry.get("value") is not None}


__all__ = ["read_rt_info"]
