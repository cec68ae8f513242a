"""Running exported TFLite (LiteRT) classifiers: quantized I/O, preprocessing, top-k decoding."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from keras_inception.imagenet import imagenet_classes, preprocess_input

# dtypes allowed inside a fully integer model: int8 activations/weights, int32 biases
# and shape operands. uint8 appears only where the caller asked for uint8 I/O.
INTEGER_DTYPES = (np.int8, np.int32, np.uint8)


def _interpreter_class() -> tuple[type, Any]:
    """(Interpreter class, OpResolverType enum): ai_edge_litert, else tf.lite."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:  # TensorFlow's copy is deprecated; used only when LiteRT is missing.
        import tensorflow as tf

        return tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return litert.Interpreter, litert.OpResolverType


def load_interpreter(
    path: str | os.PathLike, *, num_threads: int | None = None, delegates: bool = True
) -> Any:
    """A LiteRT interpreter for the `.tflite` file at `path`, tensors allocated.

    `delegates=False` disables the default XNNPACK delegate, so that the op list
    reflects the model itself (used to inspect quantized models).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TFLite model not found: path={path!r}.")
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"`num_threads` must be a positive integer; received {num_threads!r}.")
    interpreter_cls, resolver = _interpreter_class()
    kwargs = {} if delegates else {
        "experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    }
    try:
        interpreter = interpreter_cls(model_path=path, num_threads=num_threads, **kwargs)
    except ValueError as e:
        raise ValueError(f"Cannot load {path!r} as a TFLite model: {e}") from None
    interpreter.allocate_tensors()
    return interpreter


def non_integer_ops(path: str | os.PathLike) -> list[str]:
    """Ops of a TFLite model that compute in floating point, as "OP(dtypes)" strings.

    The QUANTIZE op reading a float input and the DEQUANTIZE op producing a float
    output are the model's boundaries, not computation, and are not reported. An
    empty list means every op runs on int8/int32 (or uint8 I/O) tensors.
    """
    interpreter = load_interpreter(path, delegates=False)
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    offenders = []
    for op in interpreter._get_ops_details():  # the only API listing ops with their tensors
        name = op["op_name"]
        inputs = [tensors.get(i) for i in op["inputs"] if i >= 0]
        outputs = [tensors.get(i) for i in op["outputs"] if i >= 0]
        if name == "QUANTIZE" and all(d in INTEGER_DTYPES for d in outputs):
            continue
        if name == "DEQUANTIZE" and all(d in INTEGER_DTYPES for d in inputs):
            continue
        dtypes = inputs + outputs
        if any(d not in INTEGER_DTYPES for d in dtypes):
            names = ",".join(sorted({np.dtype(d).name if d is not None else "?" for d in dtypes}))
            offenders.append(f"{name}({names})")
    return offenders


class Classifier:
    """Image classification with an exported `.tflite` model.

    Takes RGB images with values 0-255 (uint8 or float, shape `(H, W, 3)` or
    `(N, H, W, 3)`), applies the "tf" preprocessing (scaling to [-1, 1]) unless
    `preprocess=False` (for models exported with preprocessing inside), quantizes
    the input when the model has an int8/uint8 input tensor and dequantizes its
    output, so `predict` always returns float scores.

    Args:
        path: the `.tflite` file.
        class_names: names of the classes, one per output; defaults to the
            ImageNet names for 1000 outputs and `class_<i>` otherwise.
        num_threads: CPU threads of the interpreter (default: LiteRT's choice).
        preprocess: whether to scale 0-255 images to [-1, 1] before the model.
        delegates: `False` runs LiteRT's built-in kernels without the default
            XNNPACK delegate (for comparisons, or where XNNPACK misbehaves).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        class_names: Sequence[str] | None = None,
        num_threads: int | None = None,
        preprocess: bool = True,
        delegates: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.interpreter = load_interpreter(self.path, num_threads=num_threads, delegates=delegates)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{self.path!r} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "a classifier needs exactly one of each."
            )
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(int(d) for d in self._input["shape"])
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(
                f"{self.path!r} takes inputs of shape {shape}; expected (batch, height, width, 3)."
            )
        self.input_size: tuple[int, int] = (shape[1], shape[2])
        self.input_dtype = np.dtype(self._input["dtype"])
        self.num_classes = int(self._output["shape"][-1])
        self.preprocess = bool(preprocess)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != self.num_classes:
                raise ValueError(
                    f"`class_names` must have one name per output ({self.num_classes}); "
                    f"received {len(class_names)} names."
                )
        elif self.num_classes == 1000:
            class_names = [imagenet_classes()[i][1] for i in range(1000)]
        else:
            class_names = [f"class_{i}" for i in range(self.num_classes)]
        self.class_names: list[str] = class_names

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        if self.input_dtype.kind == "f":
            return x.astype(self.input_dtype)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(x / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        scale, zero_point = self._output["quantization"]
        if np.dtype(self._output["dtype"]).kind == "f" or scale == 0:
            return y.astype(np.float32)
        return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def predict(self, images: Any) -> np.ndarray:
        """Float scores of shape `(N, num_classes)` for 0-255 RGB images."""
        batch = np.asarray(images)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (*self.input_size, 3):
            raise ValueError(
                f"`images` must have shape (N, {self.input_size[0]}, {self.input_size[1]}, 3) "
                f"or ({self.input_size[0]}, {self.input_size[1]}, 3); received {batch.shape}."
            )
        batch = batch.astype(np.float32)
        if self.preprocess:
            batch = preprocess_input(batch)
        results = []
        # The exported input has a static batch of 1 (what delegates accept): one call each.
        for image in batch:
            self.interpreter.set_tensor(self._input["index"], self._quantize(image[None]))
            self.interpreter.invoke()
            results.append(self._dequantize(self.interpreter.get_tensor(self._output["index"])))
        return np.concatenate(results, axis=0)

    def top_k(self, images: Any, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-`k` `(class_index, class_name, score)` per image, best first."""
        if not isinstance(k, int) or not 1 <= k <= self.num_classes:
            raise ValueError(
                f"`k` must be an integer in [1, {self.num_classes}]; received k={k!r}."
            )
        results = []
        for row in self.predict(images):
            best = np.argsort(row, kind="stable")[::-1][:k]
            results.append([(int(i), self.class_names[i], float(row[i])) for i in best])
        return results

    def classify_files(
        self, paths: Iterable[str | os.PathLike], k: int = 5, crop_pct: float = 0.875
    ) -> list[list[tuple[int, str, float]]]:
        """Top-`k` classes of image files, center-cropped to the model's input size."""
        from keras_inception.images import load_image

        size = self.input_size[0]
        if self.input_size[1] != size:
            raise ValueError(f"Non-square input {self.input_size} is not supported for files.")
        return [self.top_k(load_image(p, size, crop_pct=crop_pct), k)[0] for p in paths]


__all__ = ["Classifier", "load_interpreter", "non_integer_ops"]
