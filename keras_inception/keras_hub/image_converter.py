"""`InceptionImageConverter`: the package's evaluation transform as a keras-hub converter."""

from __future__ import annotations

import numbers
from typing import Any

import keras
import keras_hub
import numpy as np

from keras_inception.keras_hub._compat import set_converter_resizing
from keras_inception.keras_hub.backbone import InceptionBackbone
from keras_inception.keras_hub.preset_loading import PresetLoading
from keras_inception.layers import STANDARDIZATIONS, FaceStandardization
from keras_inception.preprocessing import PIXEL_OFFSET, PIXEL_SCALE, check_crop_pct

# FaceNet's "fixed" standardisation, (x - 127.5) / 128, as a scale and an offset.
FIXED_SCALE = 1.0 / 128.0
FIXED_OFFSET = -127.5 / 128.0


def cover_shape(height: int, width: int, size: tuple[int, int], crop_pct: float) -> tuple[int, int]:
    """(height, width) of a `height x width` image resized, aspect ratio kept, to cover
    `size / crop_pct` (each side rounded, never below `size`): for a square `size`, the
    short side at `size / crop_pct`, as `keras_inception.preprocessing.resized_shape`.

    Args:
        height, width: the image's size.
        size: `(height, width)` of the centre crop that follows.
        crop_pct: the fraction of the resized image that the crop keeps, in (0, 1].
    """
    target_height, target_width = (round(side / crop_pct) for side in size)
    ratio = max(target_height / height, target_width / width)
    return max(size[0], round(height * ratio)), max(size[1], round(width * ratio))


@keras.saving.register_keras_serializable(package="keras_inception")
class CenterCropResizing(keras.layers.Resizing):
    """The resizing of `keras_inception.preprocessing.load_image`, as a Keras `Resizing`:
    the image is resized, aspect ratio kept, until it covers `(height, width) / crop_pct`
    (a square output: the short side to `size / crop_pct`), then its centre `(height,
    width)` is kept. With `crop_to_aspect_ratio=False` the image is stretched to
    `(height, width) / crop_pct` instead, then cropped the same way.

    Integer images called eagerly are resized in their dtype (rounded and clipped, as PIL
    resizes them; in `tf.data` Keras hands the layer float32 pixels). Bounding boxes
    follow only when nothing is cut (`crop_pct=1.0`).

    Args:
        height, width: the output size.
        crop_pct: the fraction of the resized image kept by the centre crop, in (0, 1].
        **kwargs: the arguments of `keras.layers.Resizing` (`interpolation`, `antialias`,
            `crop_to_aspect_ratio`, `data_format`, ...; not `pad_to_aspect_ratio`).
    """

    def __init__(self, height: int | None, width: int | None, crop_pct: float = 1.0,
                 **kwargs: Any) -> None:
        check_crop_pct(crop_pct)
        if kwargs.get("pad_to_aspect_ratio"):
            raise ValueError("CenterCropResizing crops: it takes no pad_to_aspect_ratio=True.")
        super().__init__(height, width, **kwargs)
        self.crop_pct = float(crop_pct)

    def resized_shape(self, height: Any, width: Any) -> tuple[Any, Any]:
        """The size before the centre crop of an image of `height x width` (Python
        integers, or backend scalars where the shape is dynamic, as in `tf.data`)."""
        size = (self.height, self.width)
        if not self.crop_to_aspect_ratio:
            return tuple(max(side, round(side / self.crop_pct)) for side in size)
        if isinstance(height, numbers.Integral) and isinstance(width, numbers.Integral):
            return cover_shape(int(height), int(width), size, self.crop_pct)
        ops = self.backend
        sides = [ops.cast(side, "float64") for side in (height, width)]
        ratio = ops.numpy.maximum(*(round(side / self.crop_pct) / dim
                                    for side, dim in zip(size, sides, strict=True)))
        return tuple(ops.numpy.maximum(side, ops.cast(ops.numpy.round(dim * ratio), "int32"))
                     for side, dim in zip(size, sides, strict=True))

    def _resize_and_crop(self, images: Any, interpolation: str) -> Any:
        ops = self.backend
        shape = ops.shape(images)
        new_height, new_width = self.resized_shape(shape[self.height_axis], shape[self.width_axis])
        resized = ops.image.resize(images, (new_height, new_width), interpolation=interpolation,
                                   antialias=self.antialias, data_format=self.data_format)
        top, left = (new_height - self.height) // 2, (new_width - self.width) // 2
        rows, cols = slice(top, top + self.height), slice(left, left + self.width)
        if self.data_format == "channels_first":
            resized = resized[..., rows, cols]
        else:
            resized = resized[..., rows, cols, :]
        dtype = keras.backend.standardize_dtype(images.dtype)
        if "int" not in dtype:
            return ops.cast(resized, dtype)
        limits = np.iinfo(dtype)
        return ops.cast(ops.numpy.clip(ops.numpy.round(resized), limits.min, limits.max), dtype)

    def transform_images(self, images: Any, transformation: Any = None, training: bool = True) -> Any:
        return self._resize_and_crop(images, self.interpolation)

    def transform_segmentation_masks(self, segmentation_masks: Any, transformation: Any = None,
                                     training: bool = True) -> Any:
        return self._resize_and_crop(segmentation_masks, "nearest")

    def transform_bounding_boxes(self, bounding_boxes: Any, transformation: Any,
                                 training: bool = True) -> Any:
        if self.crop_pct < 1.0:
            raise ValueError("InceptionImageConverter does not move bounding boxes with its "
                             f"centre crop: use crop_pct=1.0 (received crop_pct={self.crop_pct}).")
        return super().transform_bounding_boxes(bounding_boxes, transformation, training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "crop_pct": self.crop_pct}


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
class InceptionImageConverter(PresetLoading, keras_hub.layers.ImageConverter):
    """Raw RGB images (0-255) to the inputs of `InceptionBackbone`.

    The package's evaluation transform, `keras_inception.preprocessing.load_image`'s
    (timm's too): the short side of the image is resized (bicubic, antialiased) to
    `image_size / crop_pct`, the aspect ratio kept, and the centre `image_size` is
    kept (`CenterCropResizing`; a non-square `image_size`: the image is resized to cover
    `image_size / crop_pct`); then the pixels are scaled to [-1, 1] (`x / 127.5 - 1`,
    `preprocess_input`), or standardised as FaceNet's weights expect. The resizing is
    the backend's rather than PIL's: on photos the two differ by about 0.002 in [-1, 1]
    on average and 0.016 at the 99th percentile of the pixels (PIL resizes in fixed
    point). Unlike `load_image`, bicubic overshoot of float images is not clipped to
    0-255; integer images called eagerly are resized in their dtype (rounded and clipped,
    as PIL does).

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
            (`crop_to_aspect_ratio=False` stretches the image to `image_size / crop_pct`
            before the crop; `pad_to_aspect_ratio=True` pads instead of cropping, with
            `crop_pct=1.0` only; `data_format`, `dtype`, `name`, ...). Bounding boxes
            are refused when the centre crop cuts (`crop_pct < 1`).
    """

    backbone_cls = InceptionBackbone

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
        if kwargs.get("pad_to_aspect_ratio") and crop_pct != 1.0:
            raise ValueError("pad_to_aspect_ratio=True keeps the whole image: it takes "
                             f"crop_pct=1.0 (received crop_pct={crop_pct}).")
        scale, offset = _scaling(standardization, scale, offset)
        super().__init__(image_size=image_size, scale=scale, offset=offset,
                         interpolation=interpolation, antialias=antialias, **kwargs)
        self.crop_pct = float(crop_pct)
        self.standardization = standardization
        if not self.pad_to_aspect_ratio:  # keras-hub's own resizing pads
            height, width = self.image_size or (None, None)
            set_converter_resizing(self, CenterCropResizing(
                height, width, crop_pct, interpolation=interpolation, antialias=antialias,
                crop_to_aspect_ratio=self.crop_to_aspect_ratio, data_format=self.data_format,
                bounding_box_format=self.bounding_box_format, dtype=self.dtype_policy,
                name="resizing"))
        self.standardizer = (FaceStandardization("prewhiten", dtype=self.dtype_policy,
                                                 name="standardization")
                             if standardization == "prewhiten" else None)

    def call(self, inputs: Any) -> Any:
        return self._finish(super().call(inputs))

    def _finish(self, x: Any) -> Any:
        """FaceNet's prewhitening, after keras-hub's resize and scaling."""
        if self.standardizer is None:
            return x
        if isinstance(x, (list, tuple)):
            return type(x)(self._finish(item) for item in x)
        if isinstance(x, dict):
            return {**x, "images": self._finish(x["images"])}
        return self.standardizer(x) if len(x.shape) == 4 else self.standardizer(x[None])[0]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"crop_pct": self.crop_pct, "standardization": self.standardization})
        return config
