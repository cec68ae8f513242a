"""Converters from the reference implementations' weights to our Keras models.

* `load_timm_weights(model, state_dict)`: timm state dicts (NumPy arrays, e.g. from
  `safetensors.numpy.load_file` or an `.npz`) for Inception-v4 and Inception-ResNet-v2.
* `load_slim_checkpoint(model, path)`: TF-slim checkpoints (`InceptionV4/...`,
  `InceptionResnetV2/...`), read with `tf.train.load_checkpoint`.

Each converter is strict and all-or-nothing (`keras_inception.convert.engine`): every
source tensor must be used and every Keras weight assigned, with matching shapes;
otherwise a ValueError lists the offending names and the model is left unchanged.
The network is recognised through `keras_inception.registry`; how each source names
its weights is the network's naming table in that source
(`keras_inception.convert.naming`: `timm_names`, `slim_names`, `facenet_names`, or one
that another network's module registers with `register_naming`).
"""

import os

import keras
import numpy as np

from keras_inception.convert.slim import load_slim_checkpoint, slim_key_map
from keras_inception.convert.timm import load_timm_weights, read_state_dict, timm_key_map
from keras_inception.files import write_atomic


def save_weights_verified(model: keras.Model, path: str | os.PathLike, *, overwrite: bool = True,
                          arg: str = "path") -> str:
    """Saves `model`'s weights to `path` (`.weights.h5`) atomically, after verifying them.

    The file is written in a staging folder beside `path`, loaded into a clone of
    `model` (same architecture, fresh variables), compared weight by weight, and
    only then moved into place. `arg` names `path` in errors (`"--out"` for the CLI).
    """

    def write(staged: str) -> None:
        model.save_weights(staged)
        check = keras.models.clone_model(model)
        check.load_weights(staged)
        for saved, original in zip(check.weights, model.weights, strict=True):
            if not np.array_equal(saved.numpy(), original.numpy()):
                raise RuntimeError(
                    f"Verification of {os.fspath(path)!r} failed: {original.path} differs after reload."
                )

    return write_atomic(path, write, overwrite=overwrite, suffix=".weights.h5", create_parents=True,
                        arg=arg)

__all__ = [
    "load_slim_checkpoint",
    "load_timm_weights",
    "read_state_dict",
    "save_weights_verified",
    "slim_key_map",
    "timm_key_map",
]
