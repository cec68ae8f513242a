"""Gradients through each Keras backend's own machinery: the one place that names them.

Keras 3 has no backend-independent gradient API, so `value_and_grad` dispatches to
`tf.GradientTape`, `jax.value_and_grad` and `torch.autograd.grad`. Everything else
in `keras_inception.explain` is written with `keras.ops` and NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

# fn(x) -> (scalar to differentiate, auxiliary outputs)
ScoreFn = Callable[[Any], tuple[Any, Any]]


def value_and_grad(fn: ScoreFn, x: np.ndarray) -> tuple[Any, np.ndarray]:
    """(aux as NumPy, d value / d x as NumPy) for `value, aux = fn(x)` on the current backend.

    `fn` must be a pure function of `x` (the JAX backend traces it); `aux` is any nest
    of tensors.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        aux, grad = _tensorflow(fn, x)
    elif backend == "jax":
        aux, grad = _jax(fn, x)
    elif backend == "torch":
        aux, grad = _torch(fn, x)
    else:
        raise RuntimeError(
            f"keras_inception.explain needs gradients, which the {backend!r} backend of Keras "
            "does not give; use the tensorflow, jax or torch backend (KERAS_BACKEND)."
        )
    to_numpy = keras.ops.convert_to_numpy
    return keras.tree.map_structure(to_numpy, aux), to_numpy(grad)


def _tensorflow(fn: ScoreFn, x: np.ndarray) -> tuple[Any, Any]:
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    with tf.GradientTape(watch_accessed_variables=False) as tape:  # only d/dx is needed
        tape.watch(x)
        value, aux = fn(x)
    return aux, tape.gradient(value, x)


def _jax(fn: ScoreFn, x: np.ndarray) -> tuple[Any, Any]:
    import jax
    import jax.numpy as jnp

    (_, aux), grad = jax.value_and_grad(fn, has_aux=True)(jnp.asarray(x))
    return aux, grad


def _torch(fn: ScoreFn, x: np.ndarray) -> tuple[Any, Any]:
    import torch

    x = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
    value, aux = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return keras.tree.map_structure(lambda t: t.detach(), aux), grad
