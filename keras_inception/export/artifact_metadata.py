"""The metadata an export writes into its artifact: the model's, adjusted to what the export
changes (see `keras_inception.metadata`; each exporter stores it in its own format)."""

from __future__ import annotations

from typing import Any

from keras_inception.metadata import ModelMetadata, infer_metadata


def artifact_metadata(model: Any, metadata: ModelMetadata | None, shape: tuple, *,
                      scales_pixels: bool = False) -> ModelMetadata:
    """What the exported artifact of `model` means.

    Starts from `metadata` if given, else from `model`'s own (`infer_metadata`: the
    metadata it carries, else what its structure tells plus the defaults), then:
    `image_size` becomes the exported input's (`shape`, `(H, W, C)`); an export that
    puts the [-1, 1] scaling inside (`scales_pixels`: SavedModel
    `include_preprocessing=True`) takes raw 0-255 pixels, `input_scaling="raw"`; an
    embedding model's `embedding_dim` is its output size.

    ValueError (one line) for class names that do not fit the outputs, an
    `embedding_dim` that differs from them, and `scales_pixels` on a model whose input
    is not the [-1, 1] scaling (the scaling would be applied twice or wrongly).
    """
    if metadata is None:
        metadata, _ = infer_metadata(model)
    elif not isinstance(metadata, ModelMetadata):
        raise TypeError(f"`metadata` must be a keras_inception.metadata.ModelMetadata or None; "
                        f"received {type(metadata).__name__}.")
    metadata = _fit_outputs(metadata, int(model.output_shape[-1]))
    if scales_pixels:
        if metadata.input_scaling != "inception":
            raise ValueError(
                f"include_preprocessing=True adds the [-1, 1] scaling, but {model.name} takes "
                f"input_scaling={metadata.input_scaling!r} (its metadata): export it without "
                "include_preprocessing.")
        metadata = metadata.replace(input_scaling="raw")
    return metadata.replace(image_size=(int(shape[0]), int(shape[1])))


def _fit_outputs(metadata: ModelMetadata, outputs: int) -> ModelMetadata:
    """`metadata` checked against the model's `outputs` (its last dimension)."""
    names = metadata.class_names
    if metadata.is_classifier and names is not None and len(names) != outputs:
        raise ValueError(f"The metadata holds {len(names)} class names, but the model has "
                         f"{outputs} outputs: give one name per output.")
    if metadata.kind == "embedding":
        if metadata.embedding_dim not in (None, outputs):
            raise ValueError(f"The metadata says embedding_dim={metadata.embedding_dim}, but the "
                             f"model returns {outputs} values.")
        return metadata.replace(embedding_dim=outputs, distance=metadata.distance or "euclidean")
    return metadata


__all__ = ["artifact_metadata"]
