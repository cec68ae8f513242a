"""The learning rate of a run over several replicas (no Keras, no TensorFlow).

The batch size of a run is per replica, so the global batch is `batch_size x
replicas`. The recipes' learning rates are tuned for one replica's batch; with N
replicas they are scaled by the recipe's rule (`SCALING_RULES`): linearly (x N,
Goyal et al. 2017, "Accurate, Large Minibatch SGD") for the `paper` recipe's RMSprop
with momentum, and by the square root (x sqrt(N), the rule for adaptive optimizers,
Malladi et al. 2022) for the `transfer` recipe's Adam.
"""

from __future__ import annotations

import math

# How the recipes' learning rates follow the number of replicas.
SCALING_RULES = {"paper": "linear", "transfer": "sqrt"}


def scaled_learning_rate(learning_rate: float, replicas: int, rule: str) -> float:
    """`learning_rate` (tuned for one replica's batch) for `replicas` replicas.

    `rule` is "linear" (x replicas), "sqrt" (x sqrt(replicas)) or "none".
    """
    if not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"`replicas` must be a positive integer; received replicas={replicas!r}.")
    factors = {"linear": float(replicas), "sqrt": math.sqrt(replicas), "none": 1.0}
    if rule not in factors:
        raise ValueError(f"`rule` must be one of {tuple(factors)}; received rule={rule!r}.")
    return learning_rate * factors[rule]


__all__ = ["SCALING_RULES", "scaled_learning_rate"]
