"""Adaptive experiments (``mode: adaptive``): new sticky keys move toward the variant that does
best on a feedback metric, and the experiment stops with a winner.

`AdaptiveAllocator` works off the request path. A background task on the
router's event loop refreshes it every ``refresh`` seconds: in a worker thread
it reads the metric's feedback from the log store (`read_metric`: the
comparison's records only, feedback joined by request id and by sticky key
digest), builds each variant's posterior (Beta for a boolean metric,
Normal-Gamma for a numeric one) and computes Thompson sampling's weights with
the floor and the stop rule (`bandit.allocate`). New keys are assigned by
rendezvous hashing over those weights.

Keys already assigned keep their variant: the first request of a key in
this process looks up the variant the store last recorded for it
(`last_variant`, in a thread; the index ``requests(experiment, sticky_key)``
serves it), and a bounded LRU of known keys makes every later request a
dictionary lookup.

Once a variant's probability of being best reaches ``stop_at`` (every
variant having ``min_samples`` values), the stop is written to the store's
``experiment_stops`` table (the first process to write it decides; the
others adopt it at their next refresh) and every request gets the winner,
recorded with assignment ``winner``. A router that starts on a store with
a stop adopts it before assigning its first request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..observe.dialect import LogStore, StoreUnavailable
from ..observe.feedback import ExperimentStop
from .assign import Allocator, Choice, rendezvous
from .bandit import Allocation, BetaPosterior, NormalPosterior, Posterior, allocate
from .config import ExperimentConfig
from .keys import sticky_digest

__all__ = [
    "KNOWN_KEYS",
    "AdaptiveAllocator",
    "AdaptiveSettings",
    "MetricValues",
    "last_variant",
    "read_metric",
]

logger = logging.getLogger("llmroute.experiments")

#: The sticky keys an adaptive experiment remembers in process (least recently used
#: first out); a key forgotten is looked up in the store again on its next request.
KNOWN_KEYS = 100_000

_WHERE = (
    "r.experiment = ? AND r.assignment IN ('sticky', 'unkeyed', 'winner') "
    "AND r.off_variant = 0 AND r.status <> 'started'"
)
#: (variant, subject, value, kind) of feedback on the experiment's compared requests.
_ON_REQUESTS = (
    "SELECT r.variant, f.request_id, f.value, f.kind FROM feedback f "  # noqa: S608
    f"JOIN requests r ON r.request_id = f.request_id WHERE {_WHERE} AND f.name = ? "
    "ORDER BY f.created_at, f.feedback_id"
)
#: (first variant, last variant, subject, value, kind) of feedback on sticky keys, with
#: the variants of the key's compared requests (a key in two variants counts for none).
_ON_KEYS = (
    "SELECT min(r.variant), max(r.variant), f.sticky_key, f.value, f.kind FROM feedback f "  # noqa: S608
    "JOIN requests r ON r.experiment = f.experiment AND r.sticky_key = f.sticky_key "
    f"WHERE {_WHERE} AND f.name = ? "
    "GROUP BY f.feedback_id ORDER BY f.created_at, f.feedback_id"
)
_LAST_VARIANT = (
    "SELECT variant FROM requests WHERE experiment = ? AND sticky_key = ? "
    "AND assignment IN ('sticky', 'winner') ORDER BY started_at DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class MetricValues:
    """A metric's latest value per request (and per sticky key), by variant.

    Attributes:
        values: each variant's values.
        boolean: whether every value was given as a boolean.
    """

    values: dict[str, list[float]]
    boolean: bool


def read_metric(store: LogStore, experiment: str, metric: str) -> MetricValues:
    """`metric`'s feedback on `experiment`'s compared requests (not forced, shadow or
    off-variant), per request and per sticky key, the latest value of each (blocking)."""
    latest: dict[tuple[str, str], tuple[str, float, str]] = {}
    if store.exists():
        with store.connect(read_only=True) as conn:
            for variant, subject, value, kind in conn.execute(_ON_REQUESTS, (experiment, metric)):
                latest["request", subject] = (variant, value, kind)
            for first, last, subject, value, kind in conn.execute(_ON_KEYS, (experiment, metric)):
                if first == last:
                    latest["key", subject] = (first, value, kind)
    values: dict[str, list[float]] = {}
    for variant, value, _ in latest.values():
        values.setdefault(variant, []).append(value)
    return MetricValues(values, all(kind == "boolean" for _, _, kind in latest.values()))


def last_variant(store: LogStore, experiment: str, digest: str) -> str | None:
    """The variant the store last recorded for sticky key `digest` (None: never seen)."""
    if not store.exists():
        return None
    with store.connect(read_only=True) as conn:
        row = conn.execute(_LAST_VARIANT, (experiment, digest)).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    """An adaptive experiment's settings (see `ExperimentConfig`)."""

    metric: str
    stop_at: float = 0.95
    floor: float = 0.05
    min_samples: int = 100
    refresh: float = 30.0
    #: Whether lower values of the metric are better (a cost, a latency, a number of retries).
    minimize: bool = False

    @classmethod
    def of(cls, metric: str, spec: ExperimentConfig) -> AdaptiveSettings:
        """The settings `spec` gives, the defaults for those it leaves out."""
        default = cls(metric)
        return cls(
            metric,
            default.stop_at if spec.stop_at is None else spec.stop_at,
            default.floor if spec.floor is None else spec.floor,
            default.min_samples if spec.min_samples is None else spec.min_samples,
            default.refresh if spec.refresh is None else spec.refresh,
            spec.goal == "minimize",
        )


def posteriors(found: MetricValues, arms: Sequence[str]) -> list[Posterior]:
    """Each arm's posterior of the metric: Beta for a boolean metric, else Normal-Gamma."""
    if found.boolean:
        out: list[Posterior] = []
        for arm in arms:
            values = found.values.get(arm, [])
            successes = sum(1 for v in values if v >= 0.5)
            out.append(BetaPosterior.of(successes, len(values) - successes))
        return out
    return [NormalPosterior.of(found.values.get(arm, [])) for arm in arms]


class AdaptiveAllocator(Allocator):
    """Thompson sampling over an experiment's variants of positive weight (its arms), on
    feedback read from the log store; keys already assigned keep their variant."""

    __slots__ = (
        "_first",
        "_known",
        "_lookups",
        "_task",
        "_weights",
        "arms",
        "clock",
        "settings",
        "stopped",
        "store",
        "variants",
    )

    def __init__(
        self,
        experiment: str,
        weights: Sequence[tuple[str, float]],
        settings: AdaptiveSettings,
        store: LogStore,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(experiment)
        self.variants = tuple(name for name, _ in weights)
        self.arms = tuple(name for name, weight in weights if weight > 0)
        self.settings = settings
        self.store = store
        self.clock = clock
        #: When it stopped, and for which winner (None: still adapting).
        self.stopped: ExperimentStop | None = None
        #: Until the first refresh: the configured weights.
        self._weights: tuple[tuple[str, float], ...] = tuple(weights)
        self._known: OrderedDict[str, str] = OrderedDict()
        self._lookups: dict[str, asyncio.Future[str]] = {}
        self._first: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    # -------------------------------------------------------------- assignment

    def weights(self) -> Sequence[tuple[str, float]]:
        return self._weights

    @property
    def ready(self) -> bool:
        """Whether the first refresh is done (the store's stop, if any, is adopted)."""
        first = self._first
        return first is not None and first.done()

    def pending(self, digest: str | None) -> bool:
        """Whether a request with sticky key `digest` must wait for `settle` (the first
        refresh, or the key's lookup in the store) before it can be assigned."""
        if self.stopped is not None:
            return False
        if not self.ready:
            return True
        return digest is not None and digest not in self._known

    async def settle(self, digest: str | None) -> None:
        """Wait for the first refresh, then learn the variant of `digest` (if any)."""
        self.start()
        assert self._first is not None
        await asyncio.shield(self._first)
        if digest is None or self.stopped is not None or digest in self._known:
            return
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = self._lookups[digest] = asyncio.ensure_future(self._lookup(digest))
            lookup.add_done_callback(lambda _: self._lookups.pop(digest, None))
        await asyncio.shield(lookup)

    async def _lookup(self, digest: str) -> str:
        try:
            variant = await asyncio.to_thread(last_variant, self.store, self.experiment, digest)
        except (sqlite3.Error, OSError, StoreUnavailable):
            logger.exception(
                "experiment %r: looking up a sticky key failed; assigned by the current "
                "weights", self.experiment,
            )  # fmt: skip
            variant = None
        if variant not in self.arms:  # new, or a variant no longer configured or now off
            variant = rendezvous(self.experiment, digest, self._weights)
        self._remember(digest, variant)
        return variant

    def _remember(self, digest: str, variant: str) -> None:
        known = self._known
        known[digest] = variant
        if len(known) > KNOWN_KEYS:
            known.popitem(last=False)

    def sticky(self, key: str) -> Choice:
        stopped = self.stopped
        if stopped is not None:
            return stopped.winner, "winner"
        digest = sticky_digest(self.experiment, key)
        known = self._known
        variant = known.get(digest)
        if variant is None:  # not looked up (the caller did not settle): a new key
            variant = rendezvous(self.experiment, digest, self._weights)
            self._remember(digest, variant)
        else:
            known.move_to_end(digest)
        return variant, "sticky"

    def unkeyed(self, rng: random.Random) -> Choice:
        stopped = self.stopped
        if stopped is not None:
            return stopped.winner, "winner"
        return super().unkeyed(rng)

    # -------------------------------------------------------------- refreshing

    def start(self) -> None:
        """Start refreshing in the background on the running loop (once; again if the loop
        that ran it has ended before the experiment stopped)."""
        task = self._task
        if task is None or (task.done() and self.stopped is None):
            self._first = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(
                self._run(), name=f"llmroute-adaptive-{self.experiment}"
            )

    async def _run(self) -> None:
        first = self._first
        assert first is not None
        try:
            await self._refreshing(first)
        except Exception:
            logger.exception("experiment %r: refreshing stopped by a bug", self.experiment)
            raise
        finally:  # requests waiting for the first refresh go on with the weights as they are
            if not first.done():
                first.set_result(None)

    async def _refreshing(self, first: asyncio.Future[None]) -> None:
        while True:
            try:
                await self.refresh()
            except (sqlite3.Error, OSError, StoreUnavailable):
                logger.exception(
                    "experiment %r: reading feedback failed; the weights stay as they were",
                    self.experiment,
                )
            except (ArithmeticError, ValueError):  # feedback the maths cannot take
                logger.exception(
                    "experiment %r: the feedback could not be summed up; the weights stay as "
                    "they were until the next refresh", self.experiment,
                )  # fmt: skip
            if not first.done():
                first.set_result(None)
            if self.stopped is not None:
                return
            await asyncio.sleep(self.settings.refresh)

    async def refresh(self) -> None:
        """Read the feedback, move the weights, and stop once a variant wins."""
        decided = await asyncio.to_thread(self._decide)
        if isinstance(decided, ExperimentStop):
            if decided.winner in self.arms and decided.metric == self.settings.metric:
                self.stopped = decided
                self._weights = tuple((v, float(v == decided.winner)) for v in self.variants)
            else:
                logger.warning(
                    "experiment %r: the store says it stopped with %r on %r, which is not a "
                    "variant or the metric any more; still adapting (give a new experiment a "
                    "new name)", self.experiment, decided.winner, decided.metric,
                )  # fmt: skip
            return
        arms = dict(zip(self.arms, decided.weights, strict=True))
        self._weights = tuple((v, arms.get(v, 0.0)) for v in self.variants)

    def _decide(self) -> ExperimentStop | Allocation:
        """The stored stop, or the new allocation (a new stop is stored first); blocking."""
        store, name, settings = self.store, self.experiment, self.settings
        stored = store.experiment_stop(name)
        if stored is not None:
            return stored
        found = read_metric(store, name, settings.metric)
        arms = self.arms
        total = sum(len(found.values.get(arm, ())) for arm in arms)
        allocation = allocate(
            posteriors(found, arms), floor=settings.floor, stop_at=settings.stop_at,
            min_samples=settings.min_samples, seed=zlib.crc32(f"{name}:{total}".encode()),
            minimize=settings.minimize,
        )  # fmt: skip
        if allocation.winner is None or allocation.best is None:
            return allocation
        samples = {arm: len(found.values.get(arm, ())) for arm in arms}
        stop = ExperimentStop(
            name, arms[allocation.winner], self.clock(), allocation.best[allocation.winner],
            settings.metric, samples,
        )  # fmt: skip
        return store.stop_experiment(stop)

    async def aclose(self) -> None:
        """Stop refreshing (a task of another event loop is cancelled through its own loop)."""
        task = self._task
        if task is None or task.done():
            return
        owner = task.get_loop()
        if owner is asyncio.get_running_loop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not owner.is_closed():
            owner.call_soon_threadsafe(task.cancel)
