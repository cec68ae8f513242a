"""Running exported TFLite (LiteRT) models: `Classifier` (preprocessing, top-k decoding) and
`Embedder` (FaceNet embeddings), both with quantized I/O and the meaning the file carries
(`keras_inception.metadata`: input scaling, crop, class names); and listing a model's ops
(`list_ops`, `non_integer_ops`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from keras_inception.metadata import (
    DEFAULT_CROP_PCT,
    MetadataError,
    ModelMetadata,
    read_tflite_metadata,
)

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


def scaled_input(batch: np.ndarray, scaling: str) -> np.ndarray:
    """0-255 images as an input of `input_scaling` `scaling` takes them (see
    `keras_inception.metadata.INPUT_SCALINGS`)."""
    if scaling == "inception":
        from keras_inception.preprocessing import preprocess_input

        return preprocess_input(batch)
    if scaling in ("prewhiten", "fixed"):
        from keras_inception.embeddings import preprocess_input

        return preprocess_input(batch, scaling)
    return batch


class TFLiteImageModel:
    """A `.tflite` model with one image input `(batch, H, W, 3)` and one output, run on
    inputs as the file takes them (`run`): inputs quantized and outputs dequantized for
    integer tensors, one image per call. What `Classifier` and `Embedder` share.

    `metadata` is the `ModelMetadata` the file carries (None for a file without it,
    e.g. exported by an older version); one whose image size is not the input's is a
    `MetadataError`.
    """

    _what = "a model"

    def __new__(cls, path: str | os.PathLike, *args: Any, **kwargs: Any) -> TFLiteImageModel:
        """An OpenVINO IR (`.xml`) is run by OpenVINO: the same class with OpenVINO's
        `_open` and `_run` (`keras_inception.export.openvino_runtime.openvino_class`)."""
        if os.fspath(path).endswith(".xml"):
            from keras_inception.export.openvino_runtime import openvino_class

            cls = openvino_class(cls)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None,
                 delegates: bool = True) -> None:
        self.path = os.fspath(path)
        self._open(num_threads, delegates)
        if self.metadata is not None and self.metadata.image_size != self.input_size:
            raise MetadataError(
                f"The metadata of {self.path!r} says image_size {self.metadata.image_size}, but "
                f"its input is {self.input_size}.")

    def _open(self, num_threads: int | None, delegates: bool) -> None:
        """Loads the file: `interpreter`, `_input` and `_output` (LiteRT's tensor details),
        `input_size`, `input_dtype` and `metadata`."""
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
        self.metadata: ModelMetadata | None = read_tflite_metadata(self.path)

    def _refuse_kind(self, kind: str, use: str) -> None:
        """A one-line ValueError when the file's metadata says it is a model of `kind`,
        which the class `use` opens instead."""
        if self.metadata is not None and self.metadata.kind == kind:
            what = "an embedding model" if kind == "embedding" else "a classifier"
            raise ValueError(f"{self.path!r} is {what} (its metadata says kind {kind!r}), not "
                             f"{self._what}: open it with keras_inception.export.{use}.")

    def run(self, images: Any) -> np.ndarray:
        """Float32 outputs `(N, ...)` for `images` `(N, H, W, 3)` (or one `(H, W, 3)`) in
        the values the file's input takes: nothing is scaled here."""
        return self._run(self._batch(images).astype(np.float32))

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


class Classifier(TFLiteImageModel):
    """Image classification with an exported `.tflite` model.

    Takes RGB images with values 0-255 (uint8 or float, shape `(H, W, 3)` or
    `(N, H, W, 3)`) and scales them as the file's metadata says (`input_scaling`:
    [-1, 1] for "inception", nothing for "raw", a file with the scaling inside; [-1, 1]
    for a file without metadata) unless `preprocess=False` (the images are then passed
    as the model takes them); quantizes the input when the model has an int8/uint8 input
    tensor and dequantizes its output, so `predict` always returns float scores. A file
    whose metadata says it is an embedding model is refused (use `Embedder`).

    Args:
        path: the `.tflite` file, or an OpenVINO IR's `.xml` (run by OpenVINO, which
            also takes `inference_precision`: see `export.openvino.OpenVINOImageModel`).
        class_names: names of the classes, one per output. By default the names the
            file carries (its metadata); else, for a file of an older version, the names
            beside it (`FILE.class_names.json`, or a `class_names.json` in its folder
            with one name per output: `keras_inception.saving.read_class_names`), with a
            `SidecarWarning`; else the ImageNet names for 1000 outputs and `class_<i>`
            otherwise. Names whose count does not fit the outputs are a ValueError.
        num_threads: CPU threads of the interpreter (default: LiteRT's choice).
        preprocess: whether to scale 0-255 images as the file's input expects.
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
        self._refuse_kind("embedding", "Embedder")
        self.num_classes = int(self._output["shape"][-1])
        self.preprocess = bool(preprocess)
        self.class_names: list[str] = self._class_names(class_names)

    @property
    def input_scaling(self) -> str:
        """What `predict` does to 0-255 images: the metadata's scaling ("inception" without
        metadata), "raw" with `preprocess=False`."""
        if not self.preprocess:
            return "raw"
        return self.metadata.input_scaling if self.metadata is not None else "inception"

    @property
    def crop_pct(self) -> float:
        """The evaluation crop of `classify_files`: the metadata's, else 0.875."""
        return self.metadata.crop_pct if self.metadata is not None else DEFAULT_CROP_PCT

    def _class_names(self, given: Sequence[str] | None) -> list[str]:
        """`given` (checked), else the file's metadata's, else the names beside the file
        (an older version's), else the defaults."""
        if given is not None:
            names = [str(c) for c in given]
            if len(names) != self.num_classes:
                raise ValueError(
                    f"`class_names` must have one name per output ({self.num_classes}); "
                    f"received {len(names)} names."
                )
            return names
        if self.metadata is not None and self.metadata.class_names is not None:
            if len(self.metadata.class_names) != self.num_classes:
                raise MetadataError(
                    f"The metadata of {self.path!r} holds {len(self.metadata.class_names)} "
                    f"class names, but the model has {self.num_classes} outputs.")
            return list(self.metadata.class_names)
        names = self._names_beside()
        if names is not None:
            return names
        if self.num_classes == 1000:
            from keras_inception.preprocessing import imagenet_classes

            return [imagenet_classes()[i][1] for i in range(1000)]
        return [f"class_{i}" for i in range(self.num_classes)]

    def _names_beside(self) -> list[str] | None:
        """The class names an older version wrote beside the file (`read_class_names`),
        with a `SidecarWarning` naming the file they were read from."""
        from keras_inception.saving import (
            CLASS_NAMES_FILE,
            SidecarWarning,
            class_names_path,
            read_class_names,
        )

        names = read_class_names(self.path, self.num_classes)
        if names is None:
            return None
        source = class_names_path(self.path)
        if not os.path.isfile(source):
            source = os.path.join(os.path.dirname(os.path.abspath(self.path)), CLASS_NAMES_FILE)
        warnings.warn(
            f"{self.path!r} carries no class names: read them from {source!r}, a file that an "
            "older version of keras_inception wrote beside it. Export the model again to "
            "carry them in the file.", SidecarWarning, stacklevel=4)
        return names

    def predict(self, images: Any) -> np.ndarray:
        """Float scores of shape `(N, num_classes)` for 0-255 RGB images (scaled as
        `input_scaling` says)."""
        batch = self._batch(images).astype(np.float32)
        return self._run(scaled_input(batch, self.input_scaling))

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
        self, paths: Iterable[str | os.PathLike], k: int = 5, crop_pct: float | None = None
    ) -> list[list[tuple[int, str, float]]]:
        """Top-`k` classes of image files, center-cropped to the model's input size with
        `crop_pct` (default: the file's, `self.crop_pct`)."""
        from keras_inception.preprocessing import load_image

        size = self._square_size()
        crop = self.crop_pct if crop_pct is None else crop_pct
        return [self.top_k(load_image(p, size, crop_pct=crop), k)[0] for p in paths]


class Embedder(TFLiteImageModel):
    """Face embeddings with an exported FaceNet `.tflite` model.

    Takes face crops (RGB 0-255, uint8 or float, `(H, W, 3)` or `(N, H, W, 3)`, e.g.
    160x160 from a face detector) and returns L2-normalised float32 embeddings
    `(N, D)`, to compare with `keras_inception.embeddings.distance` / `verify`. Integer
    (int8/uint8) input and output tensors are quantized and dequantized here; the
    output is normalised again, as quantized outputs are not exactly unit vectors.

    A file exported by this package says how its input is standardised (its metadata's
    `input_scaling`): "raw" for a model with its standardisation inside
    (`FaceNet(..., include_preprocessing=True)`, the recommended way), else the weights'
    standardisation, applied here before the model
    (`keras_inception.embeddings.preprocess_input`). For a file without metadata (an
    older version's), pass it: `"prewhiten"` for ms_celeb_1m / facenet_keras.h5,
    `"fixed"` for the facenet-pytorch weights, None for raw crops. A file whose metadata
    says it is a classifier is refused (use `Classifier`).

    Args:
        path: the `.tflite` file, or an OpenVINO IR's `.xml` (as for `Classifier`).
        standardization: `"auto"` (default): the file's metadata's (None for a file
            without metadata); or `None` (the model standardises raw crops itself),
            `"prewhiten"` or `"fixed"`. A value that contradicts the file's metadata is
            a ValueError.
        num_threads: CPU threads of the interpreter (default: LiteRT's choice).
        delegates: `False` runs LiteRT's built-in kernels without XNNPACK.
    """

    _what = "an embedding model"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        standardization: str | None = "auto",
        num_threads: int | None = None,
        delegates: bool = True,
    ) -> None:
        from keras_inception.layers import STANDARDIZATIONS

        if standardization not in ("auto", None, *STANDARDIZATIONS):
            raise ValueError(
                f"`standardization` must be 'auto' (the file's), None (inside the model) or one "
                f"of {STANDARDIZATIONS}; received standardization={standardization!r}."
            )
        super().__init__(path, num_threads=num_threads, delegates=delegates)
        self._refuse_kind("classifier", "Classifier")
        if len(self._output["shape"]) != 2:
            raise ValueError(
                f"{self.path!r} returns shape {tuple(int(d) for d in self._output['shape'])}; "
                "an embedding model returns (batch, embedding_dim)."
            )
        self.embedding_dim = int(self._output["shape"][-1])
        self.input_scaling: str = self._input_scaling(standardization)
        self.standardization = (self.input_scaling if self.input_scaling in STANDARDIZATIONS
                                else None)

    def _input_scaling(self, given: str | None) -> str:
        """What `embed` does to 0-255 crops: the file's metadata's scaling, or `given` for
        a file without metadata ("raw": nothing)."""
        if self.metadata is None:
            return "raw" if given in ("auto", None) else given
        scaling = self.metadata.input_scaling
        if given != "auto" and (given or "raw") != scaling:
            inside = " (raw crops: the model standardises them itself)" if scaling == "raw" else ""
            raise ValueError(
                f"`standardization={given!r}` contradicts {self.path!r}, whose metadata says "
                f"input_scaling={scaling!r}{inside}: leave `standardization` out.")
        return scaling

    @property
    def crop_pct(self) -> float:
        """The crop of `embed_files`: the metadata's, else 1.0 (face crops resized whole)."""
        return self.metadata.crop_pct if self.metadata is not None else 1.0

    def embed(self, crops: Any) -> np.ndarray:
        """L2-normalised float32 embeddings `(N, embedding_dim)` of 0-255 RGB face crops."""
        from keras_inception.preprocessing import check_pixels

        batch = self._batch(crops)
        check_pixels(batch)
        embeddings = self._run(scaled_input(batch.astype(np.float32), self.input_scaling))
        norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
        return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_files(self, paths: Iterable[str | os.PathLike]) -> np.ndarray:
        """Embeddings of face-crop image files, resized to the model's input with the
        file's crop (`crop_pct`; whole crops for a file without metadata)."""
        from keras_inception.preprocessing import load_image

        size = self._square_size()
        crops = [load_image(p, size, crop_pct=self.crop_pct) for p in paths]
        if not crops:
            return np.zeros((0, self.embedding_dim), np.float32)
        return self.embed(np.stack(crops))


__all__ = ["Classifier", "Embedder", "TFLiteImageModel", "TFLiteOp", "list_ops", "load_interpreter",
           "non_integer_ops", "scaled_input"]
