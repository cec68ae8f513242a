"""The `TF_CONFIG` environment variable: parsing, validation, size and chief of a cluster.

`TF_CONFIG` describes a multi-worker cluster to TensorFlow; see `parse_tf_config`.
This module imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)
# Task types of TF_CONFIG that synchronous multi-worker training can use.
_SYNC_TASK_TYPES = ("chief", "worker")
_ADDRESS = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?:(\d{1,5})$")


def parse_tf_config(text: str | None = None) -> dict[str, Any] | None:
    """The validated `TF_CONFIG` (the environment variable when `text` is None).

    Returns None when it is unset or empty, else `{"cluster": {job: [address]},
    "task": {"type": str, "index": int}}`. Only the synchronous task types `chief`
    (at most one) and `worker` are accepted: Keras 3 has no parameter-server
    training and no side-car evaluator, so a `ps` or `evaluator` task is an error.

    Raises:
        ValueError: not JSON, a missing or malformed `cluster` or `task`, a task
            that is not in the cluster, or an address that is not `host:port`.
    """
    if text is None:
        text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return None

    def fail(problem: str) -> ValueError:
        return ValueError(
            f"TF_CONFIG {problem}; received TF_CONFIG={text!r}. Expected e.g. {TF_CONFIG_EXAMPLE}."
        )

    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise fail(f"is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not config[
        "cluster"
    ]:
        raise fail('needs a "cluster" object mapping task types to address lists')
    cluster = config["cluster"]
    for job, addresses in cluster.items():
        if job in ("ps", "evaluator"):
            raise fail(
                f'has a "{job}" task: parameter-server training and side-car evaluation '
                "are not supported by Keras 3; use only \"chief\" and \"worker\" tasks"
            )
        if job not in _SYNC_TASK_TYPES:
            raise fail(f'has an unknown task type "{job}" (allowed: {", ".join(_SYNC_TASK_TYPES)})')
        if not isinstance(addresses, list) or not addresses:
            raise fail(f'must list the addresses of "{job}" as a non-empty list')
        for address in addresses:
            match = _ADDRESS.match(address) if isinstance(address, str) else None
            if not match or not 0 < int(match.group(1)) < 65536:
                raise fail(f'has the address {address!r} for "{job}", which is not "host:port"')
    if len(cluster.get("chief", [])) > 1:
        raise fail('lists more than one "chief"')
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise fail('needs a "task" object with "type" and "index"')
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise fail(f'has task type "{kind}", which is not in the cluster ({", ".join(cluster)})')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(
        cluster[kind]
    ):
        raise fail(f'has task index {index!r}, not in 0..{len(cluster[kind]) - 1} for "{kind}"')
    return {"cluster": cluster, "task": {"type": kind, "index": index}}


def num_tasks(tf_config: dict[str, Any] | None) -> int:
    """The number of processes a (parsed) `TF_CONFIG` describes (1 without one)."""
    if not tf_config:
        return 1
    return sum(len(addresses) for addresses in tf_config["cluster"].values())


def is_chief_task(tf_config: dict[str, Any] | None) -> bool:
    """TensorFlow's rule: the `chief` task if there is one, else worker 0."""
    if not tf_config:
        return True
    task = tf_config["task"]
    if "chief" in tf_config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


__all__ = ["TF_CONFIG_EXAMPLE", "is_chief_task", "num_tasks", "parse_tf_config"]
