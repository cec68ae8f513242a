"""A synthetic segmentation set: shapes pasted on photos, with their masks.

For the DeepLabV3 and RetinaNet tests and `notebooks/05_segmentation.ipynb`. Each image
is a background photo (the flower photos, centre-cropped) with 1 to 3 shapes pasted on
it: a disc (class 1), a square (class 2) or a triangle (class 3), of random size,
position and rotation, coloured from a band of hues of its class (reds, greens, blues;
flowers and leaves have those colours too); the mask holds the class of each pixel (0
for the background), the last shape pasted on top. Outline and colour both tell the
class: with FaceNet's frozen features and a few hundred images, outlines alone gave a
mean IoU of about 0.5.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from PIL import Image

CLASS_NAMES = ("background", "disc", "square", "triangle")
NUM_CLASSES = len(CLASS_NAMES)


def load_backgrounds(root: str | Path, size: int, limit: int | None = None) -> np.ndarray:
    """The `.jpg` photos under `root` (sorted, recursive), centre-cropped and resized to
    `size` x `size`: uint8 `(N, size, size, 3)`."""
    paths = sorted(Path(root).rglob("*.jpg"))[:limit]
    if not paths:
        raise FileNotFoundError(f"No .jpg photos under {root}.")
    photos = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            photos.append(np.asarray(image.resize((size, size), Image.BILINEAR)))
    return np.stack(photos)


def _shape_mask(kind: int, size: int, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Boolean `(size, size)` mask of one shape of class `kind` (1 disc, 2 square, 3 triangle)."""
    yy, xx = np.mgrid[0:size, 0:size].astype("float32") + 0.5
    dy, dx = yy - centre[0], xx - centre[1]
    if kind == 1:
        return dy**2 + dx**2 <= radius**2
    # Rotate the coordinates, then test against a regular polygon's edges.
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if kind == 2:
        half = radius / np.sqrt(2.0)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):  # an equilateral triangle inscribed in the circle of `radius`
        theta = 2 * np.pi * k / 3
        inside &= np.cos(theta) * u + np.sin(theta) * v <= radius / 2
    return inside


# Each class has its own band of hues (red, green, blue) at a random saturation and value.
HUES = {1: 0.0, 2: 1 / 3, 3: 2 / 3}


def _colour(kind: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB colour (0-255) of class `kind`: its hue within 1/12 of a turn of `HUES[kind]`."""
    hue = (HUES[kind] + rng.uniform(-1 / 12, 1 / 12)) % 1.0
    return 255 * np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.4, 1.0)))


def _paste_shapes(image: np.ndarray, rng: np.random.Generator, classes: Sequence[int]
                  ) -> list[tuple[int, np.ndarray]]:
    """Pastes 1 to 3 shapes on `image` (in place); returns (class, pixels inside) of each."""
    size = image.shape[0]
    shapes = []
    for _ in range(rng.integers(1, 4)):
        kind = int(rng.choice(classes))
        radius = rng.uniform(size / 8, size / 4)
        centre = rng.uniform(radius, size - radius, 2)
        inside = _shape_mask(kind, size, centre, radius, rng.uniform(0, 2 * np.pi))
        image[inside] = _colour(kind, rng)
        shapes.append((kind, inside))
    return shapes


def _background(backgrounds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = backgrounds[rng.integers(len(backgrounds))].astype("float32")
    return image[:, ::-1].copy() if rng.random() < 0.5 else image


def make_shapes_set(backgrounds: np.ndarray, count: int, seed: int,
                    classes: Sequence[int] = (1, 2, 3)) -> tuple[np.ndarray, np.ndarray]:
    """`count` images (float32 0-255, `(count, S, S, 3)`) and masks (int32 `(count, S, S)`).

    Backgrounds are drawn from `backgrounds` (uint8 `(N, S, S, 3)`), flipped at random;
    shapes have radii of 1/8 to 1/4 of the side and lie wholly inside the image.
    """
    rng = np.random.default_rng(seed)
    size = backgrounds.shape[1]
    images = np.empty((count, size, size, 3), "float32")
    masks = np.zeros((count, size, size), "int32")
    for i in range(count):
        images[i] = _background(backgrounds, rng)
        for kind, inside in _paste_shapes(images[i], rng, classes):
            masks[i][inside] = kind
    return images, masks


def make_boxes_set(backgrounds: np.ndarray, count: int, seed: int,
                   classes: Sequence[int] = (1, 2, 3)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`count` images and their boxes, as keras-hub's object detectors take them:
    `{"boxes": (count, 3, 4) float32 yxyx pixels, "labels": (count, 3) int32}`, padded
    with boxes of -1 and label -1. Labels count from 0 (class - 1); each box encloses
    its whole shape, also where a later shape covers it."""
    rng = np.random.default_rng(seed)
    size = backgrounds.shape[1]
    images = np.empty((count, size, size, 3), "float32")
    boxes = -np.ones((count, 3, 4), "float32")
    labels = -np.ones((count, 3), "int32")
    for i in range(count):
        images[i] = _background(backgrounds, rng)
        for j, (kind, inside) in enumerate(_paste_shapes(images[i], rng, classes)):
            rows, cols = np.nonzero(inside)
            boxes[i, j] = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
            labels[i, j] = kind - 1
    return images, {"boxes": boxes, "labels": labels}


# DeepLabV3 reads the stride of "Pk" as 2**k: at output stride 16 "P4" is at 16 (as is
# "P5", which it then leaves unused), "P2" at 4.
POOLING_KEY, LOW_LEVEL_KEY = "P4", "P2"


def deeplab_segmenter(encoder: keras.Model, num_classes: int = NUM_CLASSES) -> keras.Model:
    """keras-hub's DeepLabV3 segmenter on `encoder` (an `InceptionBackbone` at output stride
    16): atrous pooling of "P4", decoder on "P2", logits at the input's size."""
    import keras_hub

    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, spatial_pyramid_pooling_key=POOLING_KEY, upsampling_size=4,
        dilation_rates=[2], low_level_feature_key=LOW_LEVEL_KEY, image_shape=encoder.image_shape)
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=num_classes)


def head_on_maps(segmenter: keras.Model) -> keras.Model:
    """The segmenter's layers after its image encoder, as a model of the encoder's maps
    (`LOW_LEVEL_KEY`, `POOLING_KEY`) that shares them: training it trains the segmenter."""
    backbone = segmenter.backbone
    pooled = backbone.get_layer("encoder_output_upsampling").input
    pooling = next(layer for layer in backbone.layers if layer.output is pooled)
    low_level = backbone.get_layer("decoder_conv").input  # what the low-level projection reads
    decoder = keras.Model([low_level, pooling.input], backbone.output)
    inputs = [keras.Input(tensor.shape[1:]) for tensor in decoder.inputs]
    return keras.Model(inputs, segmenter.output_conv(decoder(inputs)))


def fit_on_cached_maps(segmenter: keras.Model, images: np.ndarray, masks: np.ndarray,
                       epochs: int, learning_rate: float = 2e-3) -> keras.callbacks.History:
    """Trains the segmenter with its image encoder frozen: the encoder's maps of `images`
    (preprocessed) are computed once, then the head trains on them (Adam, batches of 16)."""
    encoder = segmenter.backbone.image_encoder
    pyramid = keras.Model(encoder.input, [encoder.pyramid_outputs[LOW_LEVEL_KEY],
                                          encoder.pyramid_outputs[POOLING_KEY]])
    maps = pyramid.predict(images, batch_size=16, verbose=0)
    head = head_on_maps(segmenter)
    head.compile(keras.optimizers.Adam(learning_rate),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return head.fit(maps, masks, batch_size=16, epochs=epochs, verbose=0)
