"""Training on several devices or machines with the backends' own engines.

`resolve(strategy)` turns a strategy name (`STRATEGIES`) or an existing strategy
object into a `Distribution`: the engine's object, its scope, the number of replicas
and whether this process is the chief. `keras_inception.train.train` and
`keras-inception train --strategy NAME` use it.

* `tf_config`: the `TF_CONFIG` variable of multi-worker clusters (parse, size, chief);
* `scaling`: the learning rate over several replicas (`SCALING_RULES`);
* `strategies`: `resolve`, `Distribution`, the engines' factories and the
  `MultiWorkerMirroredStrategy` subclass that Keras 3's `fit` needs.

How a multi-worker run resumes is in `keras_inception.train.resume`.

`STRATEGIES`, `tf_config` and `scaling` import neither Keras nor TensorFlow; the names
of `strategies` are imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from keras_inception.train.config import STRATEGIES
from keras_inception.train.distribute.scaling import SCALING_RULES, scaled_learning_rate
from keras_inception.train.distribute.tf_config import (
    TF_CONFIG_EXAMPLE,
    is_chief_task,
    num_tasks,
    parse_tf_config,
)

if TYPE_CHECKING:
    from keras_inception.train.distribute.strategies import (
        Distribution,
        mirrored_strategy,
        multi_worker_strategy,
        resolve,
        tpu_strategy,
    )

_LAZY = {
    name: "keras_inception.train.distribute.strategies"
    for name in ("Distribution", "mirrored_strategy", "multi_worker_strategy", "resolve",
                 "tpu_strategy")
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "SCALING_RULES",
    "STRATEGIES",
    "TF_CONFIG_EXAMPLE",
    "Distribution",
    "is_chief_task",
    "mirrored_strategy",
    "multi_worker_strategy",
    "num_tasks",
    "parse_tf_config",
    "resolve",
    "scaled_learning_rate",
    "tpu_strategy",
]
