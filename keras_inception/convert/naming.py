"""How each source of weights names each network's weights: one naming table per
(source, network), written along the architecture.

A `NamingTable` gives the name, in one source, of every weighted Keras layer of one
network: its single layers (stem convs, classifier head, ...) and its blocks, each
with its module or scope in the source and a `Template` naming the block's layers.
The tables are plain data a reader checks against the source's module tree or
variable list without running anything; the converters (`engine`) look names up here
and know nothing else of a network.

Adding a network's naming in a source is writing its table and registering it with
`register_naming(source, table)`: the built-in tables live beside the converters
(`timm_names`, `slim_names`, `facenet_names`), another network's module registers
its own.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections import Counter
from collections.abc import Iterable, Mapping

# The sources whose names the converters read (the keys of `TABLES`).
TIMM = "timm"
SLIM = "slim"
FACENET_KERAS = "facenet-keras"
FACENET_PYTORCH = "facenet-pytorch"

# The modules holding the built-in tables (they register them when imported).
BUILTIN_TABLES = (
    "keras_inception.convert.timm_names",
    "keras_inception.convert.slim_names",
    "keras_inception.convert.facenet_names",
)

# A block's layers: the Keras layer's name after `{block}_` (`branch1_0`, `branch1_1a`,
# `conv` for a residual block's up-projection) -> its name in the source below the block.
Template = Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a network: its Keras name, its name in the source and its layers."""

    keras: str  # the block's Keras name, the prefix of its layers ("mixed_5b", "block35_3")
    source: str  # its module or scope in the source ("features.6", "Repeat/block35_3")
    template: Template


@dataclasses.dataclass(frozen=True)
class NamingTable:
    """How one source names the weights of one network.

    A weighted Keras layer is named `scope`, then its block's `source` and its template
    entry (or its `layers` entry), joined by `sep`; the converter's dialect appends the
    source's parameter names (`.conv.weight`, `/BatchNorm/beta`, ...).
    """

    network: str  # the registry name of the network
    # Key prefixes that only this network's files have: how a file of it is recognised.
    markers: tuple[str, ...]
    # Weighted layers outside the blocks (stem convs, final convs, the head): Keras -> source.
    layers: Mapping[str, str]
    blocks: tuple[Block, ...]
    # Key prefixes of the classifier, left out when the model has no head.
    top: tuple[str, ...] = ()
    # Key prefixes never loaded (auxiliary heads and the like).
    ignored: tuple[str, ...] = ()
    scope: str = ""  # the network's own scope, before every name (TF-slim's "InceptionV4")
    sep: str = "."  # joins scope, block and layer names

    def __post_init__(self) -> None:
        """A table names each Keras layer once, and each source name belongs to one layer
        (else one source tensor would load into two layers)."""
        pairs = self._pairs()
        for side, what in ((0, "Keras layers"), (1, "source names")):
            twice = sorted(name for name, n in Counter(p[side] for p in pairs).items() if n > 1)
            if twice:
                raise ValueError(
                    f"The naming table of {self.network!r} lists {what} more than once: "
                    f"{', '.join(twice)}."
                )

    def _pairs(self) -> list[tuple[str, str]]:
        """(Keras layer, source name) of every entry, the blocks' templates expanded."""
        pairs = [(keras, self._join(source)) for keras, source in self.layers.items()]
        pairs += [(f"{block.keras}_{suffix}", self._join(block.source, sub))
                  for block in self.blocks for suffix, sub in block.template.items()]
        return pairs

    @functools.cached_property
    def names(self) -> dict[str, str]:
        """Keras layer -> its name in the source, for every layer the table names."""
        return dict(self._pairs())

    def _join(self, *parts: str) -> str:
        return self.sep.join(part for part in (self.scope, *parts) if part)

    def marks(self, keys: list[str]) -> bool:
        """Whether `keys` (a file's) are of this network."""
        return any(key.startswith(self.markers) for key in keys)


def numbered(keras: str, source: str, numbers: Iterable[int], template: Template) -> tuple[Block, ...]:
    """The blocks of a repeated stage: Keras `keras.format(n=n)`, source
    `source.format(n=n, i=n - 1)` for each n (`i` counts from 0, as an nn.Sequential does)."""
    return tuple(Block(keras.format(n=n), source.format(n=n, i=n - 1), template) for n in numbers)


# source -> network -> its table.
TABLES: dict[str, dict[str, NamingTable]] = {}


def register_naming(source: str, table: NamingTable, *, replace: bool = False) -> NamingTable:
    """Declares how `source` names `table.network`'s weights (once per source and network;
    registering an equal table again is allowed, another one needs `replace=True`)."""
    tables = TABLES.setdefault(source, {})
    known = tables.get(table.network)
    if not replace and known is not None and known != table:
        raise ValueError(
            f"A {source} naming table for {table.network!r} is already registered; pass "
            "replace=True to replace it."
        )
    tables[table.network] = table
    return table


def _builtin() -> None:
    for module in BUILTIN_TABLES:
        importlib.import_module(module)


def naming_tables(source: str) -> dict[str, NamingTable]:
    """Network -> table of every network that `source` names, in registration order."""
    _builtin()
    return dict(TABLES.get(source, {}))


def naming_table(source: str, network: str) -> NamingTable | None:
    """The table of `network` in `source`, or None: the source has no such network."""
    return naming_tables(source).get(network)


__all__ = [
    "BUILTIN_TABLES",
    "FACENET_KERAS",
    "FACENET_PYTORCH",
    "SLIM",
    "TABLES",
    "TIMM",
    "Block",
    "NamingTable",
    "Template",
    "naming_table",
    "naming_tables",
    "numbered",
    "register_naming",
]
