"""`InceptionImageConverter`: the package's evaluation transform as a keras-hub converter."""

from __future__ import annotations

from typing import Any

import keras
import keras_hub

from keras_inception.keras_hub.backbone import InceptionBackbone
from keras_inception.keras_hub.presets import PresetTable, converter_config, resolve_preset
from keras_inception.layers import STANDARDIZATIONS, FaceStandardization
from keras_inception.preprocessing import PIXEL_OFFSET, PIXEL_SCALE, check_crop_pct, resized_shape

# FaceNet's "fixed" standardisation, (x - 127.5) / 128, as a scale and an offset.
FIXED_SCALE = 1.0 / 128.0
FIXED_OFFSET = -127.5 / 128.0


def resize_size(image_size: tuple | None, crop_pct: float) -> tuple | None:
    """The size to resize to before the centre crop to `image_size`: each side divided by
    `crop_pct`, rounded as `keras_inception.preprocessing` rounds it.

    Args:
        image_size: `(height, width)` of the output, or None (no resizing).
        crop_pct: the fraction of the resized image that the crop keeps, in (0, 1].
    """
    if image_size is None or image_size[0] is None:
        return None
    height, width = (int(side) for side in image_size)
    return resized_shape(height, width, min(height, width), crop_pct)


def _scaling(standardization: str | None, scale: Any, offset: Any) -> tuple[Any, Any]:
    """(scale, offset) for a FaceNet standardisation, or those given."""
    if standardization not in (None, *STANDARDIZATIONS):
        raise ValueError(f"`standardization` must be None or one of {STANDARDIZATIONS}; "
                         f"received standardization={standardization!r}.")
    if standardization == "fixed":
        return FIXED_SCALE, FIXED_OFFSET
    if standardization == "prewhiten":
        return None, None  # per image, after the crop (FaceStandardization)
    return scale, offset


@keras.saving.register_keras_serializable(package="keras_inception")
class InceptionImageConverter(keras_hub.layers.ImageConverter):
    """Raw RGB images (0-255) to the inputs of `InceptionBackbone`.

    The package's evaluation transform (`keras_inception.preprocessing.load_image`):
    the central square of the image is resized (bicubic, antialiased) to `image_size /
    crop_pct` and its centre `image_size` is kept, i.e. the short side is resized to
    `image_size / crop_pct` and the centre cropped; then the pixels are scaled to
    [-1, 1] (`x / 127.5 - 1`, `preprocess_input`), or standardised as FaceNet's weights
    expect. Unlike the package's transform, bicubic overshoot is not clipped to 0-255, and
    integer images are resized in their dtype (rounded, as PIL does): pass floats to keep
    the resized values exact.

    Args:
        image_size: `(height, width)` of the output, or None to leave the size (and
            skip the crop).
        scale: multiplier of the pixels (global or per channel), or None.
        offset: added after `scale` (global or per channel), or None.
        crop_pct: the fraction of the resized image kept by the centre crop, in (0, 1];
            1.0 only crops to the aspect ratio of `image_size`.
        standardization: None, or FaceNet's `"fixed"` (`(x - 127.5) / 128`, as a scale
            and offset, which it replaces) or `"prewhiten"` (per image `(x - mean) /
            max(std, 1 / sqrt(N))`; `scale` and `offset` are then unused). Prewhitening
            runs `keras.ops`: in a `tf.data` pipeline it needs the TensorFlow backend.
        interpolation: the resizing's interpolation (`"bicubic"` as the presets).
        antialias: whether the resizing antialiases when downsampling (as PIL does).
        **kwargs: the other arguments of `keras_hub.layers.ImageConverter`
            (`crop_to_aspect_ratio`, `data_format`, `dtype`, `name`, ...). Bounding
            boxes are refused when the centre crop cuts (`crop_pct < 1`).
    """

    backbone_cls = InceptionBackbone
    presets = PresetTable()

    def __init__(
        self,
        image_size: tuple | None = None,
        scale: Any = PIXEL_SCALE,
        offset: Any = PIXEL_OFFSET,
        crop_pct: float = 1.0,
        standardization: str | None = None,
        interpolation: str = "bicubic",
        antialias: bool = True,
        **kwargs: Any,
    ) -> None:
        check_crop_pct(crop_pct)
        scale, offset = _scaling(standardization, scale, offset)
        output_size = None if image_size is None else tuple(image_size)
        super().__init__(image_size=resize_size(output_size, crop_pct), scale=scale, offset=offset,
                         interpolation=interpolation, antialias=antialias, **kwargs)
        self.crop_pct = float(crop_pct)
        self.standardization = standardization
        self._output_size = output_size
        self.standardizer = (FaceStandardization("prewhiten", dtype=self.dtype_policy,
                                                 name="standardization")
                             if standardization == "prewhiten" else None)

    @property
    def image_size(self) -> tuple | None:
        """Settable `(height, width)` of the output (after the centre crop)."""
        return getattr(self, "_output_size", None)

    @image_size.setter
    def image_size(self, value: tuple | None) -> None:
        value = None if value is None or value[0] is None else tuple(value)
        keras_hub.layers.ImageConverter.image_size.fset(self, resize_size(value, self.crop_pct))
        self._output_size = value

    def call(self, inputs: Any) -> Any:
        return self._finish(super().call(inputs))

    def _finish(self, x: Any) -> Any:
        """The centre crop and FaceNet's prewhitening, after keras-hub's resize and scaling."""
        if isinstance(x, (list, tuple)):
            return type(x)(self._finish(item) for item in x)
        if isinstance(x, dict):
            if self._crop_box() is not None:
                raise ValueError("InceptionImageConverter does not move bounding boxes with its "
                                 f"centre crop: use crop_pct=1.0 (received crop_pct={self.crop_pct}).")
            return {**x, "images": self._finish(x["images"])}
        box = self._crop_box()
        if box is not None:
            top, left, height, width = box
            if self.data_format == "channels_first":
                x = x[..., top:top + height, left:left + width]
            else:
                x = x[..., top:top + height, left:left + width, :]
        if self.standardizer is not None:
            x = self.standardizer(x) if len(x.shape) == 4 else self.standardizer(x[None])[0]
        return x

    def _crop_box(self) -> tuple[int, int, int, int] | None:
        """(top, left, height, width) of the centre crop in the resized image, or None."""
        if self.image_size is None:
            return None
        height, width = self.image_size
        resized_height, resized_width = resize_size(self.image_size, self.crop_pct)
        if (resized_height, resized_width) == (height, width):
            return None
        return (resized_height - height) // 2, (resized_width - width) // 2, height, width

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"crop_pct": self.crop_pct, "standardization": self.standardization})
        return config

    @classmethod
    def from_preset(cls, preset: str, **kwargs: Any) -> InceptionImageConverter:
        """The converter of a preset: its input size, crop, interpolation and scaling.

        Args:
            preset: a preset name (`cls.presets`), an `hf://timm/...` handle, or what
                keras-hub loads (a local preset directory, ...).
            **kwargs: arguments that replace the preset's.

        Raises:
            ValueError: an unknown preset name; the message lists the presets.
        """
        entry = resolve_preset(preset)
        if entry is None:
            return super().from_preset(preset, **kwargs)
        return cls(**{**converter_config(entry), **kwargs})
