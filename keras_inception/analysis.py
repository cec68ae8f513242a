"""Model statistics: parameters, multiply-accumulates and layer counts."""

from __future__ import annotations

import math

import keras


def _spatial(shape: tuple) -> int:
    dims = shape[2:] if keras.config.image_data_format() == "channels_first" else shape[1:-1]
    return math.prod(int(d) for d in dims)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass for one image (convs and dense layers).

    Needs a model with a static input size. Pooling, BN and additions are not counted,
    following the usual GMAC convention (timm, the paper's tables).
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.kernel.shape[2]
            total += _spatial(layer.output.shape) * kh * kw * cin * layer.filters
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def model_stats(model: keras.Model) -> dict:
    """Parameters, GMACs, layer count and input size of a model."""
    return {
        "name": model.name,
        "params": model.count_params(),
        "gmacs": count_macs(model) / 1e9,
        "layers": len(model.layers),
        "input_size": tuple(model.input_shape[1:]),
    }


def stats_table(rows: list[dict]) -> str:
    """Markdown table of `model_stats` rows."""
    lines = [
        "| model | parameters | GMACs | layers | default input |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        size = "x".join(str(d) for d in r["input_size"])
        lines.append(
            f"| {r['name']} | {r['params']:,} | {r['gmacs']:.2f} | {r['layers']} | {size} |"
        )
    return "\n".join(lines)
