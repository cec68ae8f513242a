"""Every use of a private Keras, TensorFlow or LiteRT API, in one place.

Each function says which private API it touches and why no public one does the
job; `tests/test_compat.py` checks each of them, so that a release that changes
one fails loudly there instead of silently elsewhere.
"""

from __future__ import annotations

import os

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
