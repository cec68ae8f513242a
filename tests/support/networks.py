"""What the tests expect of each classifier of the registry, from ARCHITECTURES.md and
the paper: one entry per network. A new network adds its entry here (its tests);
the tests parametrized over `registry.classifier_names()` then cover it, and
`test_models.test_every_classifier_has_expected_facts` fails until it does."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Expected:
    params: int  # with the 1000-class head
    gmacs: float  # multiply-accumulates at 299x299, in billions
    channels: int  # of the last feature map
    feature_channels: tuple[int, ...]  # of feature levels 0..4 (strides 2..32)
    residual_blocks: int  # ScaledResidual layers
    stem: str  # "inception_v4" (figure 3) or "inception_resnet" (figure 14 / IR-v2's)


EXPECTED = {
    "inception_v4": Expected(42_711_400, 12.25, 1536, (64, 160, 384, 1024, 1536), 0,
                             "inception_v4"),
    "inception_resnet_v1": Expected(22_769_848, 6.21, 1792, (64, 192, 256, 896, 1792), 20,
                                    "inception_resnet"),
    "inception_resnet_v2": Expected(55_873_736, 13.16, 1536, (64, 192, 320, 1088, 1536), 40,
                                    "inception_resnet"),
}
