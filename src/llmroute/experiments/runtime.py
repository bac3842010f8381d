"""A router's experiments, built once from the configuration: their variants' routes, their
allocators, and the choice of a variant for one request."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._config import Config
from .._errors import RequestError
from .._request import ChatRequest, EmbeddingsRequest, RequestOptions
from ..observe.record import Assignment
from ..routing.catalog import Catalog
from ..routing.model import Route
from .adaptive import AdaptiveAllocator, AdaptiveSettings
from .assign import Allocator, FixedAllocator, sticky_key
from .config import CONTROL, ExperimentConfig, StickyBy, VariantConfig
from .keys import sticky_digest
from .shadow import ShadowPool
from .variant import Template, Variant

if TYPE_CHECKING:
    from ..observe.dialect import LogStore

__all__ = ["Experiment", "Experiments", "build_experiments", "unknown_experiment"]


@dataclass(frozen=True, slots=True, eq=False)
class Experiment:
    """One experiment, ready to assign requests.

    Attributes:
        name: its name.
        route: the route it runs on (by name).
        sticky_by: what keeps a caller in their variant.
        variants: its variants by name, `control` first.
        allocator: decides each request's variant.
        starts, ends: its window in Unix seconds (None: open).
        shadow: the variant shadow copies go to, if any.
        shadow_fraction: the share of requests copied.
        shadows: the pool the copies run in (None without shadow traffic).
    """

    name: str
    route: str
    sticky_by: StickyBy
    variants: Mapping[str, Variant]
    allocator: Allocator
    starts: float | None = None
    ends: float | None = None
    shadow: Variant | None = None
    shadow_fraction: float = 0.0
    shadows: ShadowPool | None = None

    def running(self, now: float) -> bool:
        """Whether `now` (Unix seconds) is inside the experiment's window."""
        starts, ends = self.starts, self.ends
        return (starts is None or now >= starts) and (ends is None or now < ends)

    def key_digest(
        self, options: RequestOptions, request: ChatRequest | EmbeddingsRequest
    ) -> tuple[str | None, str | None]:
        """The request's sticky key and its recorded digest (None, None without one)."""
        key = sticky_key(self.sticky_by, options, request)
        return key, (sticky_digest(self.name, key) if key is not None else None)

    def choose(
        self,
        options: RequestOptions,
        request: ChatRequest | EmbeddingsRequest,
        rng: random.Random,
    ) -> tuple[Variant, Assignment, str | None]:
        """The request's variant, how it was chosen, and its sticky key's digest."""
        key, digest = self.key_digest(options, request)
        if key is None:
            name, how = self.allocator.unkeyed(rng)
        else:
            name, how = self.allocator.sticky(key)
        return self.variants[name], how, digest


class Experiments:
    """A router's experiments, by name and by the route they run on."""

    __slots__ = ("by_name", "by_route")

    def __init__(self, experiments: list[Experiment]) -> None:
        self.by_name = {e.name: e for e in experiments}
        self.by_route: dict[str | None, Experiment] = {e.route: e for e in experiments}

    def forced(self, value: str, route: Route) -> tuple[Experiment, Variant]:
        """The experiment and variant an ``experiment=variant`` option forces on a request
        to `route`.

        Raises:
            RequestError: no such experiment or variant, or the experiment runs on
                another route.
        """
        name, _, variant_name = value.partition("=")
        where = "llmroute.variant"
        experiment = self.by_name.get(name)
        if experiment is None:
            raise unknown_experiment(value, self.by_name)
        variant = experiment.variants.get(variant_name)
        if variant is None:
            raise RequestError(
                f"forced variant {value!r}: experiment {name!r} has no variant "
                f"{variant_name!r}; variants: {', '.join(experiment.variants)}",
                param=where,
            )
        if route.name != experiment.route:
            raise RequestError(
                f"forced variant {value!r}: experiment {name!r} runs on route "
                f"{experiment.route!r}, not on {route.name or route.key!r}",
                param=where,
            )
        return experiment, variant

    def adaptive(self) -> list[AdaptiveAllocator]:
        """The allocators of the adaptive experiments."""
        return [
            e.allocator for e in self.by_name.values() if isinstance(e.allocator, AdaptiveAllocator)
        ]

    def pools(self) -> list[ShadowPool]:
        """The shadow pools of the experiments that have shadow traffic."""
        return [e.shadows for e in self.by_name.values() if e.shadows is not None]


def unknown_experiment(value: str, known: Iterable[str]) -> RequestError:
    """The error for a forced ``experiment=variant`` whose experiment does not exist."""
    name = value.partition("=")[0]
    listed = ", ".join(sorted(known)) or "(none)"
    return RequestError(
        f"forced variant {value!r}: no experiment named {name!r}; experiments: {listed}",
        param="llmroute.variant",
    )


def build_experiments(
    config: Config,
    catalog: Catalog,
    store: LogStore | None = None,
    clock: Callable[[], float] | None = None,
) -> Experiments | None:
    """The configuration's experiments (None when it has none), their variants' routes
    made by `catalog`; adaptive ones read their feedback from `store` (required then) and
    date their stop by `clock`."""
    if not config.experiments:
        return None
    templates = {name: Template(name, text) for name, text in config.prompts.items()}
    return Experiments(
        [
            _experiment(name, spec, catalog, templates, store, clock)
            for name, spec in config.experiments.items()
        ]
    )


def _allocator(
    name: str,
    spec: ExperimentConfig,
    weights: list[tuple[str, float]],
    store: LogStore | None,
    clock: Callable[[], float] | None,
) -> Allocator:
    if spec.mode == "fixed":
        return FixedAllocator(name, weights)
    if store is None or clock is None or spec.metric is None:
        raise ValueError(f"experiment {name!r}: adaptive mode needs a metric, a store and a clock")
    settings = AdaptiveSettings.of(spec.metric, spec)
    return AdaptiveAllocator(name, weights, settings, store, clock)


def _experiment(
    name: str,
    spec: ExperimentConfig,
    catalog: Catalog,
    templates: Mapping[str, Template],
    store: LogStore | None,
    clock: Callable[[], float] | None,
) -> Experiment:
    control = catalog.routes[spec.route]
    ordered = {CONTROL: spec.variants[CONTROL], **spec.variants}
    variants = {v: _variant(name, v, vs, control, catalog, templates) for v, vs in ordered.items()}
    weights = [(v.name, v.weight) for v in variants.values()]
    allocator = _allocator(name, spec, weights, store, clock)
    starts, ends = spec.window
    shadow = spec.shadow
    return Experiment(
        name,
        spec.route,
        spec.sticky_by,
        variants,
        allocator,
        starts.timestamp() if starts is not None else None,
        ends.timestamp() if ends is not None else None,
        variants[shadow.variant] if shadow is not None else None,
        shadow.fraction if shadow is not None else 0.0,
        ShadowPool(name, shadow.max_in_flight) if shadow is not None else None,
    )


def _variant(
    experiment: str,
    name: str,
    spec: VariantConfig,
    control: Route,
    catalog: Catalog,
    templates: Mapping[str, Template],
) -> Variant:
    path = f"experiments.{experiment}.variants.{name}"
    key = f"{control.key}~{experiment}~{name}"
    if spec.targets is not None:
        route = catalog.variant_route(control, key, spec.targets, path, fallback=True)
        shadow = catalog.variant_route(control, f"{key}~shadow", spec.targets, path, fallback=False)
        own = route.targets
    elif spec.route is not None:
        other = catalog.routes[spec.route]
        route = Route(
            control.name, other.targets, other.config, other.strategy_impl,
            (*other.fallbacks, control), key=key,
        )  # fmt: skip
        shadow = Route(control.name, other.targets, other.config, other.strategy_impl,
                       key=f"{key}~shadow")  # fmt: skip
        own = tuple(t for r in other.chain() for t in r.targets)
    else:
        route = control
        shadow = Route(control.name, control.targets, control.config, control.strategy_impl,
                       key=f"{key}~shadow")  # fmt: skip
        own = tuple(t for r in control.chain() for t in r.targets)
    system: str | Template | None = spec.system
    if spec.prompt is not None:
        system = templates[spec.prompt]
    return Variant(
        experiment,
        name,
        spec.weight,
        route,
        shadow,
        frozenset(t.key for t in own),
        dict(spec.params or {}),
        system,
        spec.system_mode,
    )
