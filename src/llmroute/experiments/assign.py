"""Which variant a request gets: weighted rendezvous hashing of its sticky key.

Each variant scores the key: ``score = -weight / ln(u)``, where ``u`` in (0, 1)
is a hash of (experiment, variant, key); the highest score wins. ``-ln(u) /
weight`` is an exponential draw of rate `weight`, so the winner is the first
of independent exponential clocks, and each variant wins with probability
``weight / sum(weights)``: the weights hold over many keys. The hash is
BLAKE2b, never Python's salted `hash()`, so every process, worker and restart
gives a key the same variant.

Why rendezvous rather than cutting [0, 1) into slices by weight: a key's
score for one variant depends only on that variant's weight. When a weight
grows, the only keys that move are those that now prefer that variant; when
it shrinks, only its own keys move, each to the variant it ranked next. With
two variants (or any change that moves weight from one variant to one other)
that is exactly the share of keys that has to move, the difference in weight.
A change spread over several variants moves a little more than that minimum
(see docs/experiments.md#assignment for measured figures); slices would move
keys between variants whose weights did not change at all.

The weights for new keys come from an `Allocator`: `FixedAllocator` keeps the
configured ones. An allocator whose weights change over time (adaptive
allocation) also owns what keeps already assigned keys in their variant:
`Allocator.sticky` is where it looks them up.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from hashlib import blake2b

from .._request import ChatRequest, EmbeddingsRequest, RequestOptions
from ..observe.record import Assignment
from .config import StickyBy

__all__ = ["Allocator", "Choice", "FixedAllocator", "rendezvous", "sticky_key", "unit"]

#: A variant chosen, and how.
Choice = tuple[str, Assignment]

#: 2 ** -52: `unit` keeps 52 bits of the hash, so ``(h + 0.5) * _SCALE`` is exact and
#: never reaches 0 or 1.
_SCALE = 2.0**-52


def unit(experiment: str, variant: str, key: str) -> float:
    """A number in (0, 1), uniform over keys, the same in every process."""
    digest = blake2b(f"{experiment}\x00{variant}\x00{key}".encode(), digest_size=8).digest()
    return ((int.from_bytes(digest, "big") >> 12) + 0.5) * _SCALE


def rendezvous(experiment: str, key: str, weights: Sequence[tuple[str, float]]) -> str:
    """The variant of `key`: the highest ``-weight / ln(u)`` (see the module's docstring).

    Raises:
        ValueError: no variant has a positive weight.
    """
    best, best_score = "", 0.0
    for variant, weight in weights:
        if weight > 0:
            score = -weight / math.log(unit(experiment, variant, key))
            if score > best_score:
                best, best_score = variant, score
    if not best:
        raise ValueError(f"experiment {experiment!r}: no variant has a positive weight")
    return best


class Allocator(ABC):
    """Decides the variant of each request of one experiment.

    `weights` are the shares new keys are assigned by. The defaults assign a
    sticky key by `rendezvous` over them (so a key keeps its variant for as
    long as the weights do) and an unkeyed request by a weighted draw. An
    allocator whose weights move must keep the keys it already assigned where
    they are: it overrides `sticky` to look them up first.
    """

    __slots__ = ("experiment",)

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    @abstractmethod
    def weights(self) -> Sequence[tuple[str, float]]:
        """Each variant's weight for keys not assigned yet, in the configured order."""

    def sticky(self, key: str) -> Choice:
        """The variant of a request whose sticky key is `key`."""
        return rendezvous(self.experiment, key, self.weights()), "sticky"

    def unkeyed(self, rng: random.Random) -> Choice:
        """The variant of a request without a sticky key: a draw by weight."""
        weights = self.weights()
        point = rng.random() * sum(w for _, w in weights)
        chosen = ""
        for variant, weight in weights:
            if weight > 0:
                chosen = variant
                point -= weight
                if point < 0:
                    break
        return chosen, "unkeyed"


class FixedAllocator(Allocator):
    """The configured weights, for as long as the router runs (``mode: fixed``)."""

    __slots__ = ("_weights",)

    def __init__(self, experiment: str, weights: Sequence[tuple[str, float]]) -> None:
        super().__init__(experiment)
        if not any(weight > 0 for _, weight in weights):
            raise ValueError(f"experiment {experiment!r}: no variant has a positive weight")
        self._weights = tuple(weights)

    def weights(self) -> Sequence[tuple[str, float]]:
        return self._weights


def sticky_key(
    sticky_by: StickyBy, options: RequestOptions, request: ChatRequest | EmbeddingsRequest
) -> str | None:
    """The request's sticky key (None: it has none, or the experiment keeps none).

    ``user`` is the `user` option, else the request's own ``user`` parameter (as
    rate limits read it); ``session`` the `session` option; ``key`` the gateway
    key's name.
    """
    if sticky_by == "user":
        return options.user or request.user
    if sticky_by == "session":
        return options.session
    if sticky_by == "key":
        return options.key
    return None
