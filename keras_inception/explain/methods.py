"""Grad-CAM, Grad-CAM++ and integrated gradients for the package's models, on every backend.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization" (ICCV 2017); Chattopadhay et al., "Grad-CAM++: Generalized Gradient-Based
Visual Explanations for Deep Convolutional Networks" (WACV 2018); Sundararajan et al.,
"Axiomatic Attribution for Deep Networks" (ICML 2017).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_inception.explain._autodiff import value_and_grad
from keras_inception.explain.graph import (
    ExplainedGraph,
    feature_tap_names,
    rebuild,
)
from keras_inception.explain.placement import PlacementError, cell_centres, centred_cells
from keras_inception.metadata import infer_metadata

METHODS = ("gradcam", "gradcam++")
_BATCH_SIZE = 16  # images per forward pass of `scores`
# Input pixels per forward and backward pass by default: 4 images of 299x299 px, where
# Inception-ResNet-v2 peaks at 2.9 GB of memory on a CPU (integrated gradients; 1.6 GB
# with 1 image, 4.7 GB with 8, 8.1 GB with 16; Grad-CAM 6.5 GB with 16).
_PIXELS_PER_PASS = 4 * 299 * 299


def _channels_last(x: np.ndarray) -> np.ndarray:
    if keras.config.image_data_format() == "channels_first":
        return np.moveaxis(x, 1, -1)
    return x


def _as_images(images: Any) -> np.ndarray:
    x = np.asarray(keras.ops.convert_to_numpy(images), dtype="float32")
    if x.ndim != 4:
        raise ValueError(f"`images` must be a batch (N, H, W, C) preprocessed for the model; "
                         f"received an array of shape {x.shape}.")
    if len(x) == 0:
        raise ValueError(f"`images` must hold at least one image (N >= 1); received an empty "
                         f"batch of shape {x.shape}.")
    return x


def _image_size(x: np.ndarray) -> tuple[int, int]:
    """(height, width) of a batch in Keras's image data format."""
    return tuple(int(d) for d in _channels_last(x).shape[1:3])


def _batch_size(batch_size: int | None, x: np.ndarray) -> int:
    """`batch_size`, or for None as many images as make `_PIXELS_PER_PASS`: a pass's
    memory grows with its pixels, so the default bounds it at any image size without
    slowing small images down (a small batch costs small networks more time per image)."""
    if batch_size is not None:
        return batch_size  # checked by `_batches`
    height, width = _image_size(x)
    return max(1, _PIXELS_PER_PASS // (height * width))


def _batches(n: int, batch_size: int) -> list[slice]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1; received batch_size={batch_size!r}.")
    return [slice(start, start + batch_size) for start in range(0, n, batch_size)]


class _Target:
    """What is explained: class logits (`classes`, None for each image's top class) or the
    cosine similarity to reference embeddings (`references`)."""

    def __init__(self, target: Any, n: int, outputs: int) -> None:
        self.classes, self.references = None, None
        if target is None:
            return
        values = np.asarray(target)
        if values.dtype.kind in "iu" and values.ndim <= 1:
            self.classes = np.broadcast_to(values, (n,)).astype("int32") if values.size in (
                1, n) else None
            if self.classes is None or not ((0 <= values).all() and (values < outputs).all()):
                raise ValueError(
                    f"`target` must be a class index in 0..{outputs - 1}, or {n} of them (one "
                    f"per image); received target={target!r}.")
        elif values.dtype.kind == "f" and values.ndim in (1, 2) and values.shape[-1] == outputs \
                and values.size in (outputs, n * outputs):
            self.references = np.broadcast_to(values.reshape(-1, outputs), (n, outputs))
            self.references = self.references.astype("float32")
        else:
            raise ValueError(
                f"`target` must be None (each image's top class), class indices (an int or {n} "
                f"ints), or reference embeddings of shape ({outputs},) or ({n}, {outputs}); "
                f"received target of shape {values.shape} and dtype {values.dtype}.")

    def scores(self, outputs: Any, rows: slice | np.ndarray) -> Any:
        """The explained score of each image, as a tensor of the backend (`rows`: which
        images of the batch the outputs are of, a slice or indices)."""
        outputs = keras.ops.cast(outputs, "float32")
        if self.references is not None:
            refs = keras.ops.convert_to_tensor(self.references[rows])
            return keras.ops.sum(keras.ops.normalize(outputs, axis=-1)
                                 * keras.ops.normalize(refs, axis=-1), axis=-1)
        if self.classes is None:
            return keras.ops.max(outputs, axis=-1)
        picked = keras.ops.convert_to_tensor(self.classes[rows][:, None])
        return keras.ops.take_along_axis(outputs, picked, axis=-1)[:, 0]


def _prepare(model: keras.Model, images: Any, target: Any, layer: str | None,
             probe: bool = True) -> tuple[ExplainedGraph, np.ndarray, _Target]:
    x = _as_images(images)
    explained = rebuild(model, layer, probe=probe, size=_image_size(x))
    outputs = int(explained.graph.outputs[0].shape[-1])
    chosen = _Target(target, len(x), outputs)
    if target is None and not explained.logits and _is_embedding_model(model):
        raise ValueError(
            f"Model {model.name!r} computes embeddings, not classes: pass `target`, reference "
            f"embeddings of shape ({outputs},) or ({len(x)}, {outputs}); the explained score is "
            "the cosine similarity to them.")
    return explained, x, chosen


def _is_embedding_model(model: keras.Model) -> bool:
    """Whether `model` outputs embeddings, by its metadata (its own, else what its
    structure tells: an `L2Normalize` output)."""
    return not infer_metadata(model)[0].is_classifier


def _tap_shape(explained: ExplainedGraph, x: np.ndarray) -> tuple[int, ...]:
    probe = explained.probe
    shape = tuple(probe.output.shape)
    if any(d is None for d in shape[1:]):  # an input of any size: trace this one
        explained.graph.compute_output_spec(keras.KerasTensor(x.shape, dtype=x.dtype))
        shape = probe.state.shape
    return (len(x), *shape[1:])


def _activations_and_gradients(explained: ExplainedGraph, x: np.ndarray, chosen: _Target,
                               rows: slice) -> tuple[np.ndarray, np.ndarray]:
    probe, graph = explained.probe, explained.graph
    images = keras.ops.convert_to_tensor(x[rows])

    def score(delta: Any) -> tuple[Any, Any]:
        probe.state.delta = delta
        try:
            outputs = graph(images, training=False)
            activations = probe.state.value
        finally:
            probe.state.delta = probe.state.value = None
        return keras.ops.sum(chosen.scores(outputs, rows)), activations

    zeros = np.zeros(_tap_shape(explained, x[rows]), dtype=probe.compute_dtype)
    activations, gradients = value_and_grad(score, zeros)
    return (_channels_last(activations.astype("float32")),
            _channels_last(gradients.astype("float32")))


def _class_activation_map(activations: np.ndarray, gradients: np.ndarray,
                          method: str) -> np.ndarray:
    """(N, h, w) maps from the layer's activations and the score's gradients (N, h, w, C)."""
    if method == "gradcam":
        weights = gradients.mean(axis=(1, 2))
    else:  # Grad-CAM++: the closed form of its paper's alpha (eq. 19) for an exp score
        squared, cubed = gradients**2, gradients**3
        total = activations.sum(axis=(1, 2), keepdims=True)
        denominator = 2 * squared + total * cubed
        alpha = squared / np.where(denominator != 0, denominator, 1)
        weights = (alpha * np.maximum(gradients, 0)).sum(axis=(1, 2))
    return np.maximum(np.einsum("nhwc,nc->nhw", activations, weights), 0)


def _placement(model: keras.Model, explained: ExplainedGraph, size: tuple[int, int],
               cells: tuple[int, int]) -> list[tuple[float, float]]:
    """[(first cell's centre, stride)] of the map's rows and columns, in input pixels:
    from the layers between the input and the explained one (`placement.cell_centres`),
    or, where a layer on the way is not understood, the cells centred on the input."""
    try:
        return cell_centres(model, explained.path, size, cells)
    except PlacementError:
        return [centred_cells(p, c) for p, c in zip(size, cells, strict=True)]


def _interpolation(pixels: int, cells: int, first: float, stride: float) -> np.ndarray:
    """(pixels, cells) weights of bilinear interpolation between the cells' centres
    (`first + stride * j`) along one axis, the edge cells' values beyond them."""
    position = np.clip((np.arange(pixels) - first) / stride, 0, cells - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, cells - 1)
    weights = np.zeros((pixels, cells))
    np.add.at(weights, (np.arange(pixels), low), 1 - (position - low))
    np.add.at(weights, (np.arange(pixels), high), position - low)
    return weights


def _upsampled(maps: np.ndarray, size: tuple[int, int],
               placement: list[tuple[float, float]]) -> np.ndarray:
    """Each map resampled to the input's pixels (bilinear between the cells' centres, the
    edge cells' values beyond them), then divided by its maximum.

    A plain resize would stretch the map over the whole image; the cells sit a stride
    apart, each at the centre of its receptive field (`placement`): VALID reductions
    lose their remainder on the bottom and right, SAME ones pad more there, so the grid
    is seldom centred on the input. In NumPy, as the resampling is separable
    (TensorFlow's `map_coordinates` logs a oneDNN error line about int32 on CPU).
    """
    rows, columns = (_interpolation(p, c, first, stride) for p, c, (first, stride) in zip(
        size, maps.shape[1:3], placement, strict=True))
    resized = np.maximum(np.einsum("ph,nhw,qw->npq", rows, maps, columns, optimize=True), 0)
    peak = resized.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, resized / np.where(peak > 0, peak, 1), 0).astype("float32")


def peak(heatmap: Any) -> tuple[int, int] | None:
    """Where a map of `grad_cam` is highest: (row, column), or None for an all-zero map.

    The maximum of a map upsampled between its cells' centres lies on a cell's centre,
    but beyond the outermost centres the edge cells' values run on to the border: a
    maximal edge cell is a strip of equal pixels. Of those, the one nearest the image's
    centre is returned, the cell's own centre, where its value was measured (numpy's
    first maximum would take the strip's top or left end, up to half a receptive
    field away).

    Args:
        heatmap: one map (H, W), such as `grad_cam(...)[i]`.
    """
    values = np.asarray(keras.ops.convert_to_numpy(heatmap), dtype="float32")
    if values.ndim != 2:
        raise ValueError(f"`heatmap` must be one map (H, W); received shape {values.shape}.")
    if not values.max() > 0:
        return None
    ties = np.argwhere(values == values.max())
    centre = (np.array(values.shape) - 1) / 2
    row, col = ties[((ties - centre) ** 2).sum(axis=1).argmin()]
    return int(row), int(col)


def grad_cam(model: keras.Model, images: Any, target: Any = None, layer: str | None = None,
             method: str = "gradcam", *, batch_size: int | None = None) -> np.ndarray:
    """Class activation maps: where in each image the explained score comes from.

    Grad-CAM (Selvaraju et al. 2017) weights the channels of a layer's feature map by
    the mean gradient of the score over the map; Grad-CAM++ (Chattopadhay et al.
    2018) by its closed-form weighting of the positive gradients. The score is the
    target's logit: a model whose output is a softmax is explained before it.

    Args:
        model: a model built by this package, one loaded from a `.keras` it wrote
            (`train`'s `best.keras` holds its network nested), a model built with
            `input_tensor`, an ensemble of networks on one input (`layer` then names
            the network), or FaceNet. Any functional model works with `layer` given.
        images: a batch preprocessed for the model, as `model.predict` takes it.
        target: None (each image's top class), a class index or one per image, or, for
            an embedding model such as FaceNet, reference embeddings `(D,)` or `(N, D)`:
            the score is then the cosine similarity to them.
        layer: None (the network's last feature tap, `ModelSpec.feature_taps`, found
            inside nested models; where its map is 1x1 at the images' size, which
            would give a uniform map, the deepest tap whose map is larger:
            `resolve_layer(model, None, size)` names it), a layer name anywhere in the
            model (`"block17_20_ac"`), a path `"network/layer"`, or the name of a
            nested network (its default tap, as for None).
        method: "gradcam" or "gradcam++".
        batch_size: images per forward and backward pass, which bounds the memory held;
            None: as many as make 4 images of 299x299 px (63 at 75 px; Inception-ResNet-v2
            at 299 px then holds about 3 GB on a CPU).

    Returns:
        float32 array `(N, H, W)` in [0, 1] at the input's height and width (the
        layer's map upsampled bilinearly between its cells' receptive-field centres,
        `explain.placement`), each map divided by its maximum (all zeros where no
        position raises the score).

    Raises:
        ValueError: an unknown or ambiguous `layer`, a layer without a spatial output
            (the message lists the feature taps), a bad `target` or `method`, an empty
            batch, a model whose output is not (batch, scores).

    Warns:
        UserWarning: the explained layer's map is 1x1 at this size, so each map is
            uniform (a layer named so, or a network without a larger tap).
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(map(repr, METHODS))}; received "
                         f"method={method!r}.")
    explained, x, chosen = _prepare(model, images, target, layer)
    size = _image_size(x)
    maps, placement = [], None
    for rows in _batches(len(x), _batch_size(batch_size, x)):
        activations, gradients = _activations_and_gradients(explained, x, chosen, rows)
        cam = _class_activation_map(activations, gradients, method)
        if placement is None and cam.shape[1:3] == (1, 1):
            warnings.warn(
                f"layer={explained.layer_name!r} gives a 1x1 map at {size[0]}x{size[1]} px: "
                "every heatmap is uniform, it shows no place. Pass a layer with a larger map "
                f"(feature taps: {', '.join(feature_tap_names(model)) or 'none'}) or larger "
                "images.", UserWarning, stacklevel=2)
        placement = placement or _placement(model, explained, size, cam.shape[1:3])
        maps.append(_upsampled(cam, size, placement))
    return np.concatenate(maps)


def _input_gradients(explained: ExplainedGraph, x: np.ndarray, chosen: _Target,
                     rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n,), d score / d input) at the images `x` (of images `rows` of the batch)."""
    def score(images: Any) -> tuple[Any, Any]:
        scores = chosen.scores(explained.graph(images, training=False), rows)
        return keras.ops.sum(scores), scores

    return value_and_grad(score, x)


def _trapezoid_weights(steps: int) -> np.ndarray:
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] /= 2
    return weights


def integrated_gradients(model: keras.Model, images: Any, target: Any = None,
                         baseline: Any = None, steps: int = 32, *,
                         batch_size: int | None = None,
                         progress: Callable[[int, int], Any] | None = None) -> np.ndarray:
    """Integrated gradients (Sundararajan et al. 2017): each input value's share of
    `score(images) - score(baseline)`.

    The path integral from `baseline` to each image is the trapezoidal rule over
    `steps` intervals (`steps + 1` gradients), so the attributions of an image sum to
    that difference up to the rule's error. The score and `target` are those of
    `grad_cam`. The points of all paths (an image at one step) go through the network
    `batch_size` at a time, an image's steps together: one image fills a batch too.

    Args:
        model, images, target: as for `grad_cam`.
        baseline: None (zeros in the model's input space: mid-gray for the [-1, 1]
            scaling), or an array broadcastable to `images`.
        steps: intervals of the path integral (at least 1).
        batch_size: points of the paths per forward and backward pass, which bounds the
            memory held whatever the number of images and steps (the attributions do
            not depend on it); None: as for `grad_cam`.
        progress: None, or `progress(done, total)`, called as each image's attributions
            are complete (`done` images of `total`, in order): a long run can report.

    Returns:
        float32 attributions with the shape of `images` (N, H, W, C).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1; received steps={steps!r}.")
    explained, x, chosen = _prepare(model, images, target, layer=None, probe=False)
    batch_size = _batch_size(batch_size, x)
    batches = _batches(len(x) * (steps + 1), batch_size)
    if chosen.classes is None and chosen.references is None:
        # Each image's top class, fixed along the path (the top class of the baseline differs).
        chosen.classes = np.concatenate([
            np.argmax(keras.ops.convert_to_numpy(explained.graph(x[rows], training=False)), -1)
            for rows in _batches(len(x), batch_size)]).astype("int32")
    start_point = _baseline(baseline, x)
    alphas, weights = np.linspace(0.0, 1.0, steps + 1), _trapezoid_weights(steps)
    image_of, step_of = np.divmod(np.arange(len(x) * (steps + 1)), steps + 1)
    total = np.zeros(x.shape, dtype="float64")
    for points in batches:
        rows, at = image_of[points], step_of[points]
        alpha = alphas[at].astype("float32")[:, None, None, None]
        path = start_point[rows] + alpha * (x[rows] - start_point[rows])
        _, gradients = _input_gradients(explained, path, chosen, rows)
        for image in np.unique(rows):
            mine = rows == image
            total[image] += np.tensordot(weights[at[mine]], gradients[mine], axes=1)
            if progress is not None and at[mine][-1] == steps:
                progress(int(image) + 1, len(x))
    return ((x - start_point) * total).astype("float32")


def _baseline(baseline: Any, x: np.ndarray) -> np.ndarray:
    if baseline is None:
        return np.zeros_like(x)
    values = np.asarray(keras.ops.convert_to_numpy(baseline), dtype="float32")
    try:
        return np.broadcast_to(values, x.shape)
    except ValueError:
        raise ValueError(f"`baseline` must broadcast to the images' shape {x.shape}; received "
                         f"an array of shape {values.shape}.") from None


def scores(model: keras.Model, images: Any, target: Any = None, *,
           batch_size: int = _BATCH_SIZE) -> np.ndarray:
    """The score `grad_cam` and `integrated_gradients` explain, per image (float32 (N,)):
    the target's logit, or the cosine similarity to the reference embeddings."""
    explained, x, chosen = _prepare(model, images, target, layer=None, probe=False)
    return np.concatenate([
        keras.ops.convert_to_numpy(chosen.scores(explained.graph(x[rows], training=False), rows))
        for rows in _batches(len(x), batch_size)
    ]).astype("float32")
