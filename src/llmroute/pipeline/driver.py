"""The attempt driver: carries out an `AttemptPlan` for one request.

Decisions live in `routing.plan` (what to try, how long to wait),
`routing.select` (in which order) and `routing.health` (who may take traffic);
this module orders the request's route at once and each fallback when the plan
reaches it, sends each attempt through `send_attempt()`, times it, races
hedges and classifies failures. The plan's first step
(`routing.plan.first_try`) is taken before the plan is made, which happens
only if that attempt fails: most requests end with it. It is the one place
that reports attempts to health and live statistics and the one place that
names the served target in `RouteInfo`; it returns the winner as `Served`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

from .._clock import Clock
from .._errors import (
    AllTargetsFailed,
    AuthenticationError,
    LLMRouteError,
    ModelNotFound,
    PermissionDenied,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceeded,
    RateLimited,
    RequestError,
)
from .._request import RequestOptions
from .._timeouts import AttemptTimer
from .._transports import TimedOut, Timeouts, TransportError
from .._types import AttemptInfo, RouteInfo, TokenUsage
from ..routing.health import Admission, HealthTracker
from ..routing.model import Provider, Route, Target
from ..routing.plan import AttemptPlan, Order, Try, Wait, first_try
from ..routing.select import RequestFacts, Selector
from ..routing.stats import LiveStats
from .exchange import Exchange, send_attempt

if TYPE_CHECKING:
    from ..stores.shared_state import ProbeLease, SharedHealth

__all__ = ["AttemptDriver", "Served"]

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Served(Generic[T]):
    """The attempt whose answer the request delivers.

    Attributes:
        target: the target that answered.
        record: its attempt record (also `RouteInfo.served`).
        value: what the exchange made of the answer.
        usage: the tokens the answer reported, normalised (None for a stream,
            whose usage is known at its end).
        ended: when the attempt ended, on llmroute's clock: its answer read, or its
            stream's first content.
    """

    target: Target
    record: AttemptInfo
    value: T
    usage: TokenUsage | None
    ended: float


class _Unavailable(Exception):
    """Health refused the attempt at admission (it became unavailable meanwhile)."""


class _Refused(Exception):
    """The target's adapter cannot express this request (a `RequestError`): try another."""

    def __init__(self, error: RequestError) -> None:
        self.error = error
        super().__init__(str(error))


@dataclass(slots=True)
class _Race(Generic[T]):
    served: Served[T] | None = None
    failures: list[tuple[Target, ProviderError]] = field(default_factory=list)
    fatal: ProviderError | None = None
    refused: list[tuple[Target, RequestError]] = field(default_factory=list)
    running: int = 0
    changed: anyio.Event | None = None  # made when a hedge waits on it (it costs)


#: What an attempt raises that becomes a `ProviderTimeout` or `ProviderConnectionError`.
_TIMEOUTS = (TimeoutError, TransportError)


def _lone_loss(step: Try, plan: AttemptPlan, error: Exception) -> _Race[T]:
    """A lone attempt that raised `error`, as the race it would have lost."""
    race: _Race[T] = _Race()
    if isinstance(error, _Unavailable):
        plan.passed_over(step.target)
    elif isinstance(error, _Refused):
        race.refused.append((step.target, error.error))
    elif isinstance(error, ProviderError):
        race.failures.append((step.target, error))
    return race


def _as_provider_error(
    exc: TransportError | TimeoutError, target: Target, limit: float
) -> ProviderError:
    provider, model = target.provider.name, target.model
    if isinstance(exc, TimeoutError):
        return ProviderTimeout(f"no answer within {limit:.3g}s", provider=provider, model=model)
    if isinstance(exc, TimedOut):
        error: ProviderError = ProviderTimeout(str(exc), provider=provider, model=model)
    else:
        error = ProviderConnectionError(str(exc), provider=provider, model=model)
    error.__cause__ = exc
    return error


class AttemptDriver:
    """Runs one request's attempts: failover, retries, waits, hedges and deadlines."""

    def __init__(
        self,
        clock: Clock,
        rng: random.Random,
        health: HealthTracker,
        stats: LiveStats,
        selector: Selector,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self.health = health
        self.stats = stats
        self.selector = selector
        #: The rate limits providers reported (the selector's board: one per router).
        self.limits = selector.limits
        #: The fleet's shared health (the `state` section), or None: this router's alone.
        self.shared: SharedHealth | None = None

    async def run(
        self,
        route: Route,
        options: RequestOptions,
        info: RouteInfo,
        exchange: Exchange[T],
        *,
        exclude: frozenset[str] = frozenset(),
        deadline: float | None = None,
        now: float | None = None,
    ) -> Served[T]:
        """Try the route's plan until one attempt succeeds; raise when none can.

        `exclude` leaves targets out (a continuation leaves out the one that
        failed). `deadline` (on llmroute's clock) caps the request's own
        deadline: a continuation must finish within the deadline of the
        request it continues. `now`: the clock read by the caller just before
        (nothing awaited since), or None to read it here.
        """
        clock = self._clock
        info.route, info.strategy = route.name, route.strategy
        timeout = options.timeout or route.timeout
        if now is None:
            now = clock.monotonic()  # one reading per step: deciding it, then sending it
        own = now + timeout
        deadline = own if deadline is None else min(own, deadline)
        facts = exchange.facts()
        allowed = _allowed(route, options)
        targets = self._select(route, info, facts, now)
        errors: list[ProviderError] = []
        refusals: list[RequestError] = []  # targets that cannot express the request
        step = None
        if not exclude and route.hedge is None and now < deadline:
            step = first_try(targets, health=self.health, allowed=allowed, request=facts, now=now)
        if step is None:
            plan = self._plan(route, allowed, facts, exclude, targets)
        else:
            # The plan's first step, taken before there is a plan (most requests end with
            # it): llmroute's own work per chat request 229.1k -> 213.5k (callgrind,
            # count_instructions.py --kinds own, 2026-12-03). Oracle:
            # tests/test_fast_paths.py (``test_the_first_try_without_a_plan_...``).
            try:
                value, record = await self._attempt(step, route, info, exchange, deadline, now)
            except (_Unavailable, _Refused, ProviderError) as exc:
                plan = self._plan(route, allowed, facts, exclude, targets)
                plan.tried_first(step.target)
                self._learn_from(_lone_loss(step, plan, exc), plan, errors, refusals)
                now = clock.monotonic()
            else:
                return self._serve(exchange, info, step.target, record, value)
        return await self._follow(
            plan, info, exchange, facts, deadline, timeout, now, errors, refusals
        )

    async def _follow(
        self,
        plan: AttemptPlan,
        info: RouteInfo,
        exchange: Exchange[T],
        facts: RequestFacts,
        deadline: float,
        request_timeout: float,
        now: float,
        errors: list[ProviderError],
        refusals: list[RequestError],
    ) -> Served[T]:
        """Follow `plan` from `now` until an attempt succeeds; raise when none can
        (`errors` and `refusals`: what the attempts so far gave)."""
        clock = self._clock
        out_of_time = False
        while True:
            step = plan.next(now)
            if step is None:
                break
            if isinstance(step, Order):
                self._order(step.route, plan, info, facts, now)
                continue
            remaining = deadline - now
            if isinstance(step, Wait):
                if step.seconds >= remaining:
                    out_of_time = True
                    break
                await clock.sleep(step.seconds)
                now = clock.monotonic()
                continue
            if remaining <= 0:
                out_of_time = True
                break
            current = plan.route
            if current.hedge is None:
                # alone (no task group, no extra task): a win returns with no race to record
                try:
                    value, record = await self._attempt(
                        step, current, info, exchange, deadline, now
                    )
                except (_Unavailable, _Refused, ProviderError) as exc:
                    race: _Race[T] = _lone_loss(step, plan, exc)
                else:
                    return self._serve(exchange, info, step.target, record, value)
            else:
                race = await self._race(step, plan, info, exchange, deadline)
                if race.served is not None:
                    return race.served
            self._learn_from(race, plan, errors, refusals)
            now = clock.monotonic()
        if refusals and not errors:
            raise refusals[0]  # no target could even take the request
        raise self._exhausted(info, plan, errors, out_of_time, request_timeout)

    def _plan(
        self,
        route: Route,
        allowed: frozenset[str] | None,
        facts: RequestFacts,
        exclude: frozenset[str],
        targets: list[Target],
    ) -> AttemptPlan:
        """The request's plan, its own route ordered (`targets`)."""
        plan = AttemptPlan(route, rng=self._rng, health=self.health, allowed=allowed, request=facts)
        plan.exclude(exclude)
        plan.ordered(route, targets)
        return plan

    def _select(
        self, route: Route, info: RouteInfo, facts: RequestFacts, now: float
    ) -> list[Target]:
        """`route`'s targets in its strategy's order at `now`; the first route ordered
        explains the request's selection."""
        if self.shared is not None:
            self.shared.ensure()  # listening to the fleet's changes on this loop
        selection = self.selector.select(route, facts, now)
        if not info.has_reason:
            info.set_reason(route.strategy, selection.reason)
        return selection.targets

    def _order(
        self, route: Route, plan: AttemptPlan, info: RouteInfo, facts: RequestFacts, now: float
    ) -> None:
        """Order `route`'s targets for the plan (its strategy, at `now`)."""
        plan.ordered(route, self._select(route, info, facts, now))

    def _serve(
        self,
        exchange: Exchange[T],
        info: RouteInfo,
        target: Target,
        record: AttemptInfo,
        value: T,
    ) -> Served[T]:
        """Name the target whose answer the request delivers, once per run (a hedge that
        loses, even in the same turn, never gets here), and feed its timing to the live
        statistics as the exchange says."""
        info.target, info.provider, info.model = target.key, target.provider.name, target.model
        info.served = record
        usage = exchange.usage(value)
        started, took = record.started, record.latency_s
        if started is not None and took is not None:
            ended = started + took  # the attempt's own reading as it ended
        else:
            ended = self._clock.monotonic()
        timing = exchange.timing
        if timing is not None:  # each records `took` as the time to first content too
            if timing == "stream":
                self.stats.streamed(target.key, took, ended)
            else:
                self.stats.answered(target.key, took, usage.output if usage else 0, ended)
        return Served(target, record, value, usage, ended)

    @staticmethod
    def _learn_from(
        race: _Race[T],
        plan: AttemptPlan,
        errors: list[ProviderError],
        refusals: list[RequestError],
    ) -> None:
        """Feed a lost race's outcomes to the plan; raise an error that ends the request."""
        for target, refusal in race.refused:
            refusals.append(refusal)
            plan.exclude(frozenset({target.key}))
        for target, failure in race.failures:
            errors.append(failure)
            if not plan.failed(target, failure):
                raise failure

    # -------------------------------------------------------------- one step

    async def _race(
        self,
        step: Try,
        plan: AttemptPlan,
        info: RouteInfo,
        exchange: Exchange[T],
        deadline: float,
    ) -> _Race[T]:
        """Run `step` and hedges beside it; the first answer wins."""
        race: _Race[T] = _Race()

        async def run_one(one: Try) -> None:
            try:
                value, record = await self._attempt(
                    one, plan.route, info, exchange, deadline, self._clock.monotonic()
                )
            except _Unavailable:
                plan.passed_over(one.target)
            except _Refused as refused:
                race.refused.append((one.target, refused.error))
            except ProviderError as error:
                race.failures.append((one.target, error))
                if plan.would_end(error):
                    race.fatal = error
                    tg.cancel_scope.cancel()
            else:
                if race.served is not None:
                    await exchange.discard(value)
                else:  # the winner alone names the target (a loser may end in the same turn)
                    race.served = self._serve(exchange, info, one.target, record, value)
                    tg.cancel_scope.cancel()
            finally:
                race.running -= 1
                if race.changed is not None:
                    race.changed.set()

        def start(one: Try) -> None:
            race.running += 1  # counted now: the task may not have started when we look
            tg.start_soon(run_one, one)

        async with anyio.create_task_group() as tg:
            start(step)
            after = self._hedge_delay(plan.route, step.target)
            if after is not None:
                await self._hedge(race, plan, after, start)
        return race

    def _hedge_delay(self, route: Route, target: Target) -> float | None:
        hedge = route.hedge
        if hedge is None:
            return None
        if hedge.after == "p95":
            return self.stats.ttft_percentile(target.key, 95)
        return float(hedge.after)

    async def _hedge(
        self, race: _Race[T], plan: AttemptPlan, after: float, start: Callable[[Try], object]
    ) -> None:
        """Start up to `max_extra` hedges, each when the race has gone `after` without news."""
        hedge = plan.route.hedge
        assert hedge is not None
        for _ in range(hedge.max_extra):
            with anyio.move_on_after(after):
                while race.running and race.served is None:
                    changed = race.changed = anyio.Event()
                    await changed.wait()
            if race.served is not None or race.fatal or not race.running:
                return
            extra = plan.hedge(self._clock.monotonic())
            if extra is None:
                return
            start(extra)

    async def _attempt(
        self,
        step: Try,
        plan_route: Route,
        info: RouteInfo,
        exchange: Exchange[T],
        deadline: float,
        now: float,
    ) -> tuple[T, AttemptInfo]:
        """Send one attempt, admitted by health at `now`, bounded by `deadline` and the
        attempt timeout; record it, and tell health and stats how it went. Returns the
        answer and its record (the caller names the served target: see `_serve`)."""
        clock, health, stats = self._clock, self.health, self.stats
        target = step.target
        key = target.key
        admission = health.admit(key, now)
        if admission is None:
            raise _Unavailable(key)
        provider = target.provider
        limit = min(deadline - now, plan_route.attempt_timeout or provider.attempt_timeout)
        # a probe's lease: the time it takes counts in the attempt's
        lease = await self._probe_lease(key, admission, limit) if admission.probe else None
        record = AttemptInfo(key, provider.name, target.model, step.kind)
        record.circuit, record.started = admission.state, now
        info.attempts.append(record)
        timeouts = _attempt_timeouts(provider, plan_route, exchange.stream)
        known_limits = self.limits.report(key)
        stats.started(key)
        answered = False  # the answer's latency is a sample of the target's
        try:
            timer = AttemptTimer(limit)
            try:
                value = await send_attempt(exchange, target, record, timeouts, clock, self.limits)
            except BaseException as exc:
                if timer.stop(exc):
                    timed_out = TimeoutError()  # what asyncio.timeout raises, from the cancel
                    timed_out.__cause__ = exc
                    raise _as_provider_error(timed_out, target, limit) from timed_out
                if isinstance(exc, _TIMEOUTS):
                    raise _as_provider_error(exc, target, limit) from exc
                raise
            timer.stop(None)
            answered = True
        except ProviderError as error:
            ended = clock.monotonic()
            error.provider, error.model = provider.name, target.model
            record.outcome, record.status = "error", error.status
            record.error_type, record.error = type(error).__name__, error.message
            record.latency_s = ended - now
            self._report_failure(target, admission, error, ended)
            raise
        except RequestError as exc:
            record.outcome, record.error_type, record.error = "error", type(exc).__name__, str(exc)
            record.latency_s = clock.monotonic() - now
            health.released(key, admission)
            raise _Refused(exc) from exc
        except Exception as exc:
            record.outcome, record.error_type, record.error = "error", type(exc).__name__, str(exc)
            record.latency_s = clock.monotonic() - now
            health.released(key, admission)
            raise
        except BaseException:
            record.outcome = "cancelled"
            record.latency_s = clock.monotonic() - now
            health.released(key, admission)
            raise
        finally:
            ended = clock.monotonic()  # one reading for the stats, the limits and health
            stats.ended(key, ended - now if answered else None)
            if self.limits.report(key) is not known_limits:
                self._respect_limits(target, ended)
            if lease is not None:
                # sent after the outcome the tracker publishes (succeeded() below, or the
                # failure already reported): the next prober learns the outcome first
                lease.end()
        record.latency_s = ended - now
        health.succeeded(key, ended, admission)
        return value, record

    async def _probe_lease(self, key: str, admission: Admission, limit: float) -> ProbeLease | None:
        """The fleet's lease for a half-open probe of `key`, held for the attempt's `limit`;
        None without shared state or when Redis cannot be asked (the local bound applies).
        Raises `_Unavailable` when other routers hold every lease."""
        shared = self.shared
        if shared is None:
            return None
        try:
            lease = await shared.probe(key, self.health.config.half_open_probes, limit)
        except BaseException:
            self.health.released(key, admission)
            raise
        if lease is False:
            self.health.released(key, admission)
            raise _Unavailable(key)
        return lease

    def _report_failure(
        self, target: Target, admission: Admission, error: ProviderError, now: float
    ) -> None:
        """Tell health what a failure says about the target."""
        key = target.key
        if isinstance(error, RateLimited) and error.retryable:  # not QuotaExceeded
            self.health.released(key, admission)
            if error.retry_after is not None:
                self.health.cool_down(key, now, error.retry_after, f"RateLimited: {error.message}")
        elif error.retryable or _target_fault(error):
            self.health.failed(key, now, admission, f"{type(error).__name__}: {error.message}")
        else:
            self.health.released(key, admission)

    def _respect_limits(self, target: Target, now: float) -> None:
        """Cool a target down until its reset when its headers say nothing is left."""
        state = self.limits.state(target.key)
        if state is None:
            return
        waits = []
        if state.remaining_requests == 0 and state.reset_requests_s is not None:
            waits.append(state.reset_requests_s)
        if state.remaining_tokens == 0 and state.reset_tokens_s is not None:
            waits.append(state.reset_tokens_s)
        if waits:
            self.health.cool_down(target.key, now, max(waits), "rate limit exhausted until reset")

    # -------------------------------------------------------------- giving up

    def _exhausted(
        self,
        info: RouteInfo,
        plan: AttemptPlan,
        errors: list[ProviderError],
        out_of_time: bool,
        timeout: float,
    ) -> LLMRouteError:
        last = errors[-1] if errors else None
        if out_of_time:
            error: LLMRouteError = ProviderTimeout(
                f"request deadline of {timeout:g}s reached after {len(errors)} failed attempt(s)"
                + (f"; last error: {last}" if last else ""),
                provider=last.provider if last else "", model=last.model if last else "",
            )  # fmt: skip
        else:
            parts = [f"{a.target}: {a.error_type} ({a.error})" for a in info.attempts]
            now = self._clock.monotonic()
            for key in plan.unavailable:
                if key in {a.target for a in info.attempts}:
                    continue
                snap = self.health.snapshot(key, now)
                parts.append(
                    f"{key}: unavailable (circuit {snap.state}, back in "
                    f"{snap.cooldown_remaining_s:.3g}s; last error: {snap.last_error})"
                )
            what = f"all {len(errors)} attempt(s) failed" if errors else "no target could be tried"
            error = AllTargetsFailed(
                f"{what}: {'; '.join(parts) or 'no eligible target'}",
                attempts=info.attempts,
                errors=errors,
            )
        error.__cause__ = last
        return error


def _attempt_timeouts(provider: Provider, route: Route, stream: bool) -> Timeouts:
    """A whole answer is bounded as a whole by the attempt's limit; a stream's reads by the
    idle timeout."""
    if not stream:
        return provider.whole_timeouts
    idle = route.config.idle_timeout
    if idle is None:
        return provider.timeouts
    return Timeouts(connect=provider.timeouts.connect, read=idle)


def _target_fault(error: ProviderError) -> bool:
    """Whether a fatal error says the target itself is broken (not the request)."""
    return isinstance(error, AuthenticationError | PermissionDenied | ModelNotFound | QuotaExceeded)


def _allowed(route: Route, options: RequestOptions) -> frozenset[str] | None:
    if options.targets is None:
        return None
    allowed = frozenset(options.targets)
    chain = route.chain()
    if not any(t.key in allowed or t.provider.name in allowed for r in chain for t in r.targets):
        keys = ", ".join(t.key for r in chain for t in r.targets)
        raise RequestError(
            f"none of the allowed targets ({', '.join(sorted(allowed))}) is on this route; "
            f"its targets are: {keys}",
            param="llmroute.targets",
        )
    return allowed
