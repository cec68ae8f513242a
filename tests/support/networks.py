"""What the tests expect of each classifier of the registry, from ARCHITECTURES.md and
the paper: one entry per network. A new network adds its entry here (its tests);
the tests parametrized over `registry.classifier_names()` then cover it, and
`test_models.test_every_classifier_has_expected_facts` fails until it does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


def _valid(n: int, k: int = 3, s: int = 1) -> int:
    return (n - k) // s + 1


def _levels(s2: int, s4: int, s8: int) -> list[int]:
    s16 = _valid(s8, s=2)  # Reduction-A
    return [s2, s4, s8, s16, _valid(s16, s=2)]  # Reduction-B


def _first_convs(n: int) -> int:
    return _valid(_valid(n, s=2))  # conv_1a 3x3/2 V, conv_2a 3x3 V, conv_2b same


def inception_v4_sizes(n: int) -> list[int]:
    """Spatial size of each feature level for an n x n input (the paper's figure 3)."""
    s2 = _first_convs(n)
    s4 = _valid(s2, s=2)  # mixed_3a
    return _levels(s2, s4, _valid(_valid(s4), s=2))  # mixed_4a (3x3 V), mixed_5a (3x3/2 V)


def inception_resnet_sizes(n: int) -> list[int]:
    """The same for the Inception-ResNet stems (figure 14, and IR-v2's as released)."""
    s2 = _first_convs(n)
    s4 = _valid(_valid(s2, s=2))  # pool_3a, conv_3b (1x1 V), conv_4a (3x3 V)
    return _levels(s2, s4, _valid(s4, s=2))  # pool_5a or conv_4b


@dataclasses.dataclass(frozen=True)
class Expected:
    params: int  # with the 1000-class head
    gmacs: float  # multiply-accumulates at 299x299, in billions
    channels: int  # of the last feature map
    feature_channels: tuple[int, ...]  # of feature levels 0..4 (strides 2..32)
    residual_blocks: int  # ScaledResidual layers
    level_sizes: Callable[[int], list[int]]  # input size -> spatial size of each level


EXPECTED = {
    "inception_v4": Expected(42_711_400, 12.25, 1536, (64, 160, 384, 1024, 1536), 0,
                             inception_v4_sizes),
    "inception_resnet_v1": Expected(22_769_848, 6.21, 1792, (64, 192, 256, 896, 1792), 20,
                                    inception_resnet_sizes),
    "inception_resnet_v2": Expected(55_873_736, 13.16, 1536, (64, 192, 320, 1088, 1536), 40,
                                    inception_resnet_sizes),
}
