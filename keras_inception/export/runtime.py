"""Running exported TFLite (LiteRT) models: `Classifier` (preprocessing, top-k decoding) and
`Embedder` (FaceNet embeddings), both with quantized I/O; and listing a model's ops
(`list_ops`, `non_integer_ops`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

# dtypes allowed inside a fully integer model: int8 activations/weights, int32 biases
# and shape operands. uint8 appears only where the caller asked for uint8 I/O.
INTEGER_DTYPES = ("int8", "int32", "uint8")


class TFLiteOp(NamedTuple):
    """One op of a `.tflite` model: LiteRT's op name ("CONV_2D") and the dtype names
    ("int8", "float32", ...) of its input and output tensors (absent optional inputs
    left out)."""

    name: str
    inputs: list[str]
    outputs: list[str]


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

    `delegates=False` disables the default XNNPACK delegate: LiteRT's built-in
    kernels run every op (for comparisons, or where XNNPACK misbehaves).
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


def list_ops(path: str | os.PathLike) -> list[TFLiteOp]:
    """Every op of the `.tflite` model at `path` (all subgraphs, in file order), read
    from the file itself: what the converter wrote, before any delegate."""
    from keras_inception import _compat

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TFLite model not found: path={path!r}.")
    try:
        return [TFLiteOp(*op) for op in _compat.tflite_ops(path)]
    except Exception as e:  # a truncated or foreign file makes the flatbuffer reader fail
        raise ValueError(f"Cannot read {path!r} as a TFLite model: {e}") from None


def non_integer_ops(path: str | os.PathLike) -> list[str]:
    """Ops of a TFLite model that compute in floating point, as "OP(dtypes)" strings.

    The QUANTIZE op reading a float input and the DEQUANTIZE op producing a float
    output are the model's boundaries, not computation, and are not reported. An
    empty list means every op runs on int8/int32 (or uint8 I/O) tensors.
    """
    offenders = []
    for op in list_ops(path):
        if op.name == "QUANTIZE" and all(d in INTEGER_DTYPES for d in op.outputs):
            continue
        if op.name == "DEQUANTIZE" and all(d in INTEGER_DTYPES for d in op.inputs):
            continue
        dtypes = op.inputs + op.outputs
        if any(d not in INTEGER_DTYPES for d in dtypes):
            offenders.append(f"{op.name}({','.join(sorted(set(dtypes)))})")
    return offenders


class _TFLiteImageModel:
    """What `Classifier` and `Embedder` share: one image input `(batch, H, W, 3)` and one
    output, quantized inputs and dequantized outputs, one image per call."""

    _what = "a model"

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None, delegates: bool) -> None:
        self.path = os.fspath(path)
        self.interpreter = load_interpreter(self.path, num_threads=num_threads, delegates=delegates)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{self.path!r} has {len(inputs)} inputs and {len(outputs)} outputs; "
                f"{self._what} needs exactly one of each."
            )
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(int(d) for d in self._input["shape"])
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(
                f"{self.path!r} takes inputs of shape {shape}; expected (batch, height, width, 3)."
            )
        self.input_size: tuple[int, int] = (shape[1], shape[2])
        self.input_dtype = np.dtype(self._input["dtype"])

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

    def _batch(self, images: Any) -> np.ndarray:
        batch = np.asarray(images)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (*self.input_size, 3):
            raise ValueError(
                f"`images` must have shape (N, {self.input_size[0]}, {self.input_size[1]}, 3) "
                f"or ({self.input_size[0]}, {self.input_size[1]}, 3); received {batch.shape}."
            )
        return batch

    def _run(self, batch: np.ndarray) -> np.ndarray:
        results = []
        # The exported input has a static batch of 1 (what delegates accept): one call each.
        for image in batch:
            self.interpreter.set_tensor(self._input["index"], self._quantize(image[None]))
            self.interpreter.invoke()
            results.append(self._dequantize(self.interpreter.get_tensor(self._output["index"])))
        if not results:
            return np.zeros((0, int(self._output["shape"][-1])), np.float32)
        return np.concatenate(results, axis=0)

    def _square_size(self) -> int:
        size = self.input_size[0]
        if self.input_size[1] != size:
            raise ValueError(f"Non-square input {self.input_size} is not supported for files.")
        return size


class Classifier(_TFLiteImageModel):
    """Image classification with an exported `.tflite` model.

    Takes RGB images with values 0-255 (uint8 or float, shape `(H, W, 3)` or
    `(N, H, W, 3)`), applies the "tf" preprocessing (scaling to [-1, 1]) unless
    `preprocess=False` (for models exported with preprocessing inside), quantizes
    the input when the model has an int8/uint8 input tensor and dequantizes its
    output, so `predict` always returns float scores.

    Args:
        path: the `.tflite` file.
        class_names: names of the classes, one per output. By default the file's
            own names, `FILE.class_names.json` beside it (written by `keras-inception
            export`; a count that does not fit the outputs is a ValueError naming it);
            else a `class_names.json` in its folder if it has one name per output (one
            that does not fit, another model's, gives a `ClassNamesWarning` and is not
            used); else the ImageNet names for 1000 outputs and `class_<i>` otherwise.
        num_threads: CPU threads of the interpreter (default: LiteRT's choice).
        preprocess: whether to scale 0-255 images to [-1, 1] before the model.
        delegates: `False` runs LiteRT's built-in kernels without the default
            XNNPACK delegate (for comparisons, or where XNNPACK misbehaves).
    """

    _what = "a classifier"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        class_names: Sequence[str] | None = None,
        num_threads: int | None = None,
        preprocess: bool = True,
        delegates: bool = True,
    ) -> None:
        super().__init__(path, num_threads=num_threads, delegates=delegates)
        self.num_classes = int(self._output["shape"][-1])
        self.preprocess = bool(preprocess)
        self.class_names: list[str] = self._class_names(class_names)

    def _class_names(self, given: Sequence[str] | None) -> list[str]:
        """`given` (checked), else the file's own or its folder's names, else the defaults."""
        if given is not None:
            names = [str(c) for c in given]
            if len(names) != self.num_classes:
                raise ValueError(
                    f"`class_names` must have one name per output ({self.num_classes}); "
                    f"received {len(names)} names."
                )
            return names
        from keras_inception.saving import read_class_names

        names = read_class_names(self.path, self.num_classes)
        if names is not None:
            return names
        if self.num_classes == 1000:
            from keras_inception.preprocessing import imagenet_classes

            return [imagenet_classes()[i][1] for i in range(1000)]
        return [f"class_{i}" for i in range(self.num_classes)]

    def predict(self, images: Any) -> np.ndarray:
        """Float scores of shape `(N, num_classes)` for 0-255 RGB images."""
        batch = self._batch(images).astype(np.float32)
        if self.preprocess:
            from keras_inception.preprocessing import preprocess_input

            batch = preprocess_input(batch)
        return self._run(batch)

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
        from keras_inception.preprocessing import load_image

        size = self._square_size()
        return [self.top_k(load_image(p, size, crop_pct=crop_pct), k)[0] for p in paths]


class Embedder(_TFLiteImageModel):
    """Face embeddings with an exported FaceNet `.tflite` model.

    Takes face crops (RGB 0-255, uint8 or float, `(H, W, 3)` or `(N, H, W, 3)`, e.g.
    160x160 from a face detector) and returns L2-normalised float32 embeddings
    `(N, D)`, to compare with `keras_inception.embeddings.distance` / `verify`. Integer
    (int8/uint8) input and output tensors are quantized and dequantized here; the
    output is normalised again, as quantized outputs are not exactly unit vectors.

    Export the model with its standardisation inside
    (`FaceNet(..., include_preprocessing=True)`, the recommended way): raw crops go
    in and `standardization` stays None. For a model exported without it, pass the
    weights' standardisation (`"prewhiten"` for ms_celeb_1m / facenet_keras.h5,
    `"fixed"` for the facenet-pytorch weights): it is applied here, before the model
    (`keras_inception.embeddings.preprocess_input`).

    Args:
        path: the `.tflite` file.
        standardization: `None` (the model standardises raw crops itself),
            `"prewhiten"` or `"fixed"`.
        num_threads: CPU threads of the interpreter (default: LiteRT's choice).
        delegates: `False` runs LiteRT's built-in kernels without XNNPACK.
    """

    _what = "an embedding model"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        standardization: str | None = None,
        num_threads: int | None = None,
        delegates: bool = True,
    ) -> None:
        from keras_inception.layers import STANDARDIZATIONS

        if standardization is not None and standardization not in STANDARDIZATIONS:
            raise ValueError(
                f"`standardization` must be None (inside the model) or one of {STANDARDIZATIONS}; "
                f"received standardization={standardization!r}."
            )
        super().__init__(path, num_threads=num_threads, delegates=delegates)
        if len(self._output["shape"]) != 2:
            raise ValueError(
                f"{self.path!r} returns shape {tuple(int(d) for d in self._output['shape'])}; "
                "an embedding model returns (batch, embedding_dim)."
            )
        self.embedding_dim = int(self._output["shape"][-1])
        self.standardization = standardization

    def embed(self, crops: Any) -> np.ndarray:
        """L2-normalised float32 embeddings `(N, embedding_dim)` of 0-255 RGB face crops."""
        from keras_inception.preprocessing import check_pixels

        batch = self._batch(crops)
        check_pixels(batch)
        if self.standardization is not None:
            from keras_inception.embeddings import preprocess_input

            batch = preprocess_input(batch, self.standardization)
        embeddings = self._run(batch.astype(np.float32))
        norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
        return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_files(self, paths: Iterable[str | os.PathLike]) -> np.ndarray:
        """Embeddings of face-crop image files, each resized whole to the model's input."""
        from keras_inception.preprocessing import load_image

        size = self._square_size()
        crops = [load_image(p, size, crop_pct=1.0) for p in paths]
        if not crops:
            return np.zeros((0, self.embedding_dim), np.float32)
        return self.embed(np.stack(crops))


__all__ = ["Classifier", "Embedder", "TFLiteOp", "list_ops", "load_interpreter", "non_integer_ops"]
