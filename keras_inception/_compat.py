"""Every use of a private Keras, TensorFlow or LiteRT API, in one place.

Each function says which private API it touches and why no public one does the
job; `tests/test_compat.py` checks each of them, so that a release that changes
one fails loudly there instead of silently elsewhere.

keras-hub's private APIs are in `keras_inception/keras_hub/_compat.py` (checked in the
same test file): the core never imports keras-hub, an optional extra.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import keras


def save_legacy_h5_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Writes `model`'s weights in the legacy Keras 2 `.h5` layout (keras.applications'
    release files), through `keras.src.legacy.saving.legacy_h5_format`.

    Keras 3 reads that layout with the public `model.load_weights("x.h5")` but only
    writes `.weights.h5`; tests and tools need the legacy layout to stand in for the
    released ImageNet files.
    """
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(os.fspath(path), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def build_for_fit(model: keras.Model, data_spec: Any) -> None:
    """Creates the variables of a compiled `model`'s optimizer and metrics before `fit`,
    from `data_spec` (a `tf.data.Dataset`'s `element_spec`: `(images, labels)` specs),
    through Keras' private `Trainer._symbolic_build`.

    Keras' TensorFlow trainer calls it itself only under a distribution strategy; on one
    device the optimizer and the compiled metrics create their variables inside the first
    trace of the train step, and `tf.function` then traces the whole step a second time.
    Building them first saves that trace: Inception-ResNet-v2 at 75 px, 23 s of a 59 s
    first epoch. The optimizer has a public `build`, the compiled metrics have none.
    tests/test_compat.py checks that `fit` then creates no variable (and does without it).
    """
    model._symbolic_build(data_batch=data_spec)


# Where Keras' saving walk keeps each object type's attribute skip set (its global state).
SKIPSET_KEY_READ = "saving_attr_skiplist_{}"


def cache_saving_attr_skipsets() -> None:
    """Makes Keras' `.keras` / `.weights.h5` saving and loading find the attribute skip
    sets it computed before, through `keras.src.saving.saving_lib.get_attr_skipset`.

    The walk over a model's objects (`saving_lib._walk_saveable`) asks that function, for
    every layer, variable holder and optimizer it visits, which attributes to skip. It
    builds a reference object of the type and lists its attributes, and stores the result
    for the next call, but under another key (`saving_attr_skipset_*`) than the one it
    reads (`saving_attr_skiplist_*`): every call builds it again, about 40% of a
    `save_weights` (Inception-ResNet-v1: 0.38 s, 0.22 s with the set found). This stores
    it under the key it reads too, in Keras' global state (cleared by `clear_session`, as
    Keras intends); the sets are the ones Keras computes. No public API sets the cache.
    tests/test_compat.py checks that Keras still misses it (the day it does not, this goes),
    and that a model saves the same file either way. Idempotent.
    """
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    original = saving_lib.get_attr_skipset
    if getattr(original, "__wrapped__", None) is not None:
        return

    def get_attr_skipset(obj_type: str) -> set:
        skipset = original(obj_type)
        global_state.set_global_attribute(SKIPSET_KEY_READ.format(obj_type), skipset)
        return skipset

    get_attr_skipset.__wrapped__ = original
    saving_lib.get_attr_skipset = get_attr_skipset


# tf2onnx reads this variable once per conversion (`tf2onnx.convert._convert_common`):
# set, it turns off the deep copy of the graph before every optimizer pass.
TF2ONNX_CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"


@contextlib.contextmanager
def lean_tf2onnx() -> Iterator[None]:
    """tf2onnx conversions inside the block keep one copy of the weights instead of dozens.

    Two private parts of tf2onnx (1.17) are changed for the duration of the block and put
    back afterwards, even on an error:

    * `tf2onnx.graph.Node.update_proto` runs before every optimizer pass and rewrites each
      node's attributes into its NodeProto (`del attribute[:]`, then `extend`). With the
      upb protobuf runtime the removed copy stays in the message's arena, so every pass
      adds one more copy of every constant tensor, i.e. of every weight. Constant nodes
      are skipped here: their value never goes into the graph from the NodeProto
      (`Graph.make_graph` turns constants into initializers from `Node._attr`), and a node
      that stops being a constant is written in full by the original method.
    * The environment variable `TF2ONNX_CATCH_ERRORS` is set to FALSE: otherwise tf2onnx
      deep-copies the whole graph before each optimizer pass, to roll back a failing
      pass. A failing pass then fails the export (which is checked anyway).

    No public option does either. On IR-v2 at 75 px (1000 classes, 0.21 GiB of float32
    weights) the export's peak RSS falls from about 11 GiB to about 5
    (benchmarks/onnx_memory.py). tests/test_compat.py checks that the patched method
    still exists and is restored.
    """
    from tf2onnx.graph import Node

    original = Node.__dict__["update_proto"]  # KeyError: tf2onnx changed, see the test

    def update_proto(self, external_tensor_storage=None):
        if self.is_const() and not self.get_body_graphs():
            return None
        return original(self, external_tensor_storage)

    update_proto.__wrapped__ = original
    previous = os.environ.get(TF2ONNX_CATCH_ERRORS)
    Node.update_proto = update_proto
    os.environ[TF2ONNX_CATCH_ERRORS] = "FALSE"
    try:
        yield
    finally:
        Node.update_proto = original
        if previous is None:
            os.environ.pop(TF2ONNX_CATCH_ERRORS, None)
        else:
            os.environ[TF2ONNX_CATCH_ERRORS] = previous


def tflite_schema():
    """The generated Python reader of the TFLite flatbuffer schema (`schema.fbs`).

    Replaces `Interpreter._get_ops_details()`, the only interpreter API that lists
    ops with their tensors. The schema itself is public and versioned (old files
    stay readable), but its generated reader `ai_edge_litert.schema_py_generated`
    (TensorFlow's copy: `tensorflow.lite.python.schema_py_generated`) is not a
    documented module: its location and accessor names are checked in
    tests/test_compat.py.
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # LiteRT missing: TensorFlow's copy
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def tflite_ops(path: str | os.PathLike) -> list[tuple[str, list[str], list[str]]]:
    """`(op_name, input_dtypes, output_dtypes)` of every op of every subgraph of the
    `.tflite` file at `path`, in file order. Op names are LiteRT's builtin names
    ("CONV_2D", or the custom op's name); dtypes are lower-case TFLite tensor type
    names ("float32", "int8", ...); absent optional inputs are left out."""
    schema = tflite_schema()
    with open(os.fspath(path), "rb") as f:
        buffer = bytearray(f.read())
    model = schema.Model.GetRootAs(buffer, 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in BuiltinCode; older files only fill the deprecated field.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM and code.CustomCode():
            codes.append(code.CustomCode().decode())
        else:
            codes.append(op_names.get(builtin, f"BUILTIN_{builtin}"))
    ops = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)

        def dtype(index: int, graph=graph) -> str:
            kind = graph.Tensors(index).Type()
            return type_names.get(kind, f"type_{kind}")

        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            inputs = [op.Inputs(i) for i in range(op.InputsLength())]
            outputs = [op.Outputs(i) for i in range(op.OutputsLength())]
            ops.append((codes[op.OpcodeIndex()], [dtype(i) for i in inputs if i >= 0],
                        [dtype(i) for i in outputs if i >= 0]))
    return ops


class WeightsMismatch(NamedTuple):
    """What Keras' error says when a weights file does not fit a model (`None`: not said)."""

    count: int | None  # how many layers could not be loaded
    layer_class: str | None  # first such layer: its class ("Dense") ...
    layer_name: str | None  # ... its name ...
    expected_shape: str | None  # ... the shape of the model's variable, "(5, 2)" ...
    received_shape: str | None  # ... and the file's


def parse_weights_mismatch(error: Exception) -> WeightsMismatch:
    """The figures of the (very long) ValueError that `model.load_weights` raises when the
    file's shapes differ from the model's.

    Keras has no public, structured form of this error: its text is parsed here, and
    tests/test_compat.py checks the parse on a real mismatch, so a Keras release that
    words it differently fails there (the caller then falls back to a shorter message).
    """
    text = str(error)
    count = re.search(r"A total of (\d+) objects could not be loaded", text)
    example = re.search(r"for object <(\w+) name=([\w./-]+)", text)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    return WeightsMismatch(
        int(count[1]) if count else None,
        example[1] if example else None,
        example[2] if example else None,
        shapes[1] if shapes else None,
        shapes[2] if shapes else None,
    )



def tflite_with_metadata(flatbuffer: bytes, name: str, data: bytes, identifier: bytes) -> bytes:
    """The TFLite flatbuffer `flatbuffer` with the metadata entry `name` holding `data`
    (added, or replaced if the file has one of that name); everything else is kept, and
    the result is finished with the file `identifier` (b"TFL3").

    What TensorFlow's converter does to add its own `CONVERSION_METADATA` entry
    (`tensorflow.lite.python.util.populate_conversion_metadata`): the model is unpacked
    into the schema's object API (`ModelT`), the entry and its buffer are appended, and
    the model is packed again with the public `flatbuffers.Builder`. The generated
    object API is the private part (see `tflite_schema`); tests/test_compat.py checks
    that the result keeps the converter's entries, loads in LiteRT's interpreter and
    computes exactly what the original does. Files that store their buffers outside
    the flatbuffer (over 2 GB) are refused: repacking them needs their layout.
    """
    import flatbuffers
    import numpy as np

    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    if any(buffer.offset > 1 for buffer in model.buffers or ()):
        raise ValueError("cannot add metadata to a TFLite model whose buffers are stored "
                         "outside the flatbuffer (a model over 2 GB)")
    payload = schema.BufferT()
    payload.data = np.frombuffer(bytes(data), dtype=np.uint8)
    model.metadata = model.metadata or []
    for entry in model.metadata:
        if entry.name in (name, name.encode()):
            model.buffers[entry.buffer] = payload
            break
    else:
        model.buffers = model.buffers or []
        model.buffers.append(payload)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=identifier)
    return bytes(builder.Output())
