"""Running an OpenVINO IR (`.xml` with its `.bin`) on OpenVINO's CPU plugin, behind the
interface of `runtime.TFLiteImageModel`: `runtime.Classifier("model.xml")` and
`runtime.Embedder("model.xml")` are those classes with `OpenVINORunner`'s `_open` and
`_run` (`openvino_class`; `TFLiteImageModel.__new__` picks it by the suffix).

Precision: the CPU plugin runs float32 models in bfloat16 by default on CPUs with bf16
instructions (AVX-512 BF16, AMX): about 3 significant digits per activation, a relative
L2 difference from Keras of about 1e-3 here. The runners ask for float32
(`inference_precision="f32"`, Keras' answers to about 1e-7) unless told otherwise:
`inference_precision="bf16"` (or None, the plugin's default) chooses bfloat16's speed.

This module imports neither `runtime` nor the exporters (they build on it), and OpenVINO
only when a model is opened: it comes with the `openvino` extra (`OPENVINO_EXTRA`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_inception.metadata import read_openvino_metadata

# What installs the optional packages of OpenVINO export and inference.
OPENVINO_EXTRA = 'pip install "keras_inception[openvino]"'
# The CPU plugin's `INFERENCE_PRECISION_HINT` values offered here; None: the plugin's
# default (bf16 on CPUs with bf16 instructions, else f32).
INFERENCE_PRECISIONS = ("f32", "bf16", None)
DEVICE = "CPU"


def require_packages(quantization: str | None = None) -> None:
    """A one-line ImportError naming `OPENVINO_EXTRA` when openvino (and, for int8, nncf)
    is not installed; imports neither (cheap: the command line checks it first)."""
    import importlib.util

    for name in ("openvino", "nncf") if quantization == "int8" else ("openvino",):
        if importlib.util.find_spec(name) is None:
            what = "int8 OpenVINO export" if name == "nncf" else "OpenVINO export and inference"
            raise ImportError(f"{what} needs the optional package {name}; install it with: "
                              f"{OPENVINO_EXTRA}.")


def import_openvino() -> Any:
    """The `openvino` module, or a one-line ImportError naming `OPENVINO_EXTRA`."""
    require_packages()
    import openvino

    return openvino


def weights_path(path: str | os.PathLike) -> str:
    """The `.bin` beside the `.xml` at `path`: where OpenVINO reads its weights from."""
    return os.path.splitext(os.fspath(path))[0] + ".bin"


def check_precision(value: Any) -> str | None:
    """`value` if it is one of `INFERENCE_PRECISIONS`, else a one-line ValueError."""
    if value not in INFERENCE_PRECISIONS:
        raise ValueError(f"`inference_precision` must be one of {INFERENCE_PRECISIONS} (None: "
                         f"the CPU plugin's default); received inference_precision={value!r}.")
    return value


def compile_ir(model: Any, *, inference_precision: str | None = "f32",
               num_threads: int | None = None) -> Any:
    """`model` (an `openvino.Model` or the path of an `.xml`) compiled for the CPU with the
    `inference_precision` hint ("f32", "bf16", None: the plugin's default) and
    `num_threads` inference threads (None: the plugin's choice)."""
    ov = import_openvino()
    config: dict[str, Any] = {}
    if check_precision(inference_precision) is not None:
        config["INFERENCE_PRECISION_HINT"] = inference_precision
    if num_threads is not None:
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"`num_threads` must be a positive integer; received {num_threads!r}.")
        config["INFERENCE_NUM_THREADS"] = num_threads
    return ov.Core().compile_model(model, DEVICE, config)


def read_ir(path: str) -> Any:
    """The `openvino.Model` of the `.xml` at `path` and the `.bin` beside it, or one line
    saying why not (a missing `.bin`, a file OpenVINO cannot read)."""
    ov = import_openvino()
    weights = weights_path(path)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"The weights of the OpenVINO model {path!r} are missing: "
                                f"{weights!r} not found (keep the .bin beside the .xml).")
    try:
        return ov.Core().read_model(path, weights)
    except RuntimeError as e:
        reason = " ".join(str(e).split())[:300]
        raise ValueError(f"Cannot load {path!r} as an OpenVINO model: {reason}") from None


def _static(dims: Any) -> list[int | None]:
    """The dimensions of an OpenVINO partial shape (None for a dynamic one)."""
    if not dims.rank.is_static:
        return []
    return [d.get_length() if d.is_static else None for d in dims]


class OpenVINORunner:
    """What a `runtime` class needs to run an OpenVINO IR instead of a `.tflite` file:
    `_open` (reads the IR, its metadata and its input size, compiles it for the CPU
    plugin) and `_run`; `openvino_class` puts it in front of `TFLiteImageModel`,
    `Classifier` or `Embedder`. The IR takes `(batch, H, W, 3)` float32 as the model
    takes it (any batch); `inference_precision` is the CPU plugin's (see the module)."""

    inference_precision: str | None = "f32"

    def __init__(self, path: str | os.PathLike, *, inference_precision: str | None = "f32",
                 **kwargs: Any) -> None:
        self.inference_precision = check_precision(inference_precision)
        super().__init__(path, **kwargs)  # the runtime class's __init__, which calls _open

    def _open(self, num_threads: int | None, delegates: bool) -> None:
        if not delegates:
            raise ValueError("`delegates=False` applies to .tflite files (LiteRT's XNNPACK); "
                             f"received an OpenVINO model {self.path!r}.")
        self.metadata = read_openvino_metadata(self.path)  # a foreign .xml: one line
        model = read_ir(self.path)
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(f"{self.path!r} has {len(model.inputs)} inputs and "
                             f"{len(model.outputs)} outputs; {self._what} needs exactly one of each.")
        shape = _static(model.inputs[0].get_partial_shape())
        if len(shape) != 4 or shape[3] != 3 or None in shape[1:3]:
            raise ValueError(f"{self.path!r} takes inputs of shape {shape}; expected (batch, "
                             "height, width, 3) with a fixed height and width.")
        self.input_size = (shape[1], shape[2])
        self.input_dtype = np.dtype(np.float32)
        outputs = [d or 1 for d in _static(model.outputs[0].get_partial_shape())[1:]]
        # Shown as the TFLite runner shows them: a batch of one.
        self._input = {"shape": np.array([1, *shape[1:]]), "dtype": self.input_dtype}
        self._output = {"shape": np.array([1, *outputs]), "dtype": self.input_dtype}
        self.compiled = compile_ir(model, inference_precision=self.inference_precision,
                                   num_threads=num_threads)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, *self._output["shape"][1:]), np.float32)
        return np.asarray(self.compiled(batch.astype(np.float32, copy=False))[0], np.float32)


_CLASSES: dict[type, type] = {}


def openvino_class(cls: type) -> type:
    """`cls` (`TFLiteImageModel`, `Classifier`, `Embedder`) running an OpenVINO IR: the
    subclass of `OpenVINORunner` and `cls`, made once; it also takes `inference_precision`."""
    if issubclass(cls, OpenVINORunner):
        return cls
    if cls not in _CLASSES:
        name = "OpenVINOImageModel" if cls.__name__ == "TFLiteImageModel" else \
            f"OpenVINO{cls.__name__}"
        _CLASSES[cls] = type(name, (OpenVINORunner, cls), {
            "__module__": __name__,
            "__doc__": f"`{cls.__name__}` of an OpenVINO IR (`.xml`): see `OpenVINORunner`."})
    return _CLASSES[cls]


__all__ = ["DEVICE", "INFERENCE_PRECISIONS", "OPENVINO_EXTRA", "OpenVINORunner", "check_precision",
           "compile_ir", "import_openvino", "openvino_class", "read_ir", "require_packages",
           "weights_path"]
