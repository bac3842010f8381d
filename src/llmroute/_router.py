"""`AsyncRouter`: the OpenAI-shaped client surface, wired to the request pipeline."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict

from typing_extensions import Unpack

from ._async_resources import AsyncChat, AsyncEmbeddings, AsyncModels
from ._client_options import RouterState, request_options
from ._clock import Clock, SystemClock
from ._config import Config
from ._config_load import load_config, load_file
from ._loop import RouterClosed
from ._params import (
    ChatCreateParams,
    split_client_params,
)
from ._prices import PriceBook
from ._request import (
    validate_chat_request,
)
from ._views import ProviderView, RouteView, provider_views, route_views
from .cache.stage import CacheStage, CacheStats
from .experiments.shadow import ShadowStatus
from .limits.budget import BudgetStatus
from .limits.stats import LimitStats
from .observe.hooks import HookEvent
from .observe.record import RequestRecord
from .observe.recorder import Recorder, Redactor
from .observe.sinks import Sink
from .observe.status import RecorderStatus
from .pipeline.assemble import build_stages
from .pipeline.driver import AttemptDriver
from .pipeline.executor import RequestPipeline
from .pipeline.experiment import experiment_hook
from .pipeline.stage import Stage
from .responses.resource import AsyncResponses
from .responses.state import ResponseStore, store_from_config
from .routing.catalog import Catalog
from .routing.forget import RouteStateOwners
from .routing.health import HealthTracker, TargetHealth
from .routing.rate_limits import RateLimitBoard
from .routing.select import Selector
from .routing.stats import LiveStats, TargetStats
from .routing.strategies import Strategy
from .stores.shared_state import SharedHealth, SharedStateStatus

if TYPE_CHECKING:
    import anthropic
    import httpx2
    import openai

    from .experiments.report import ExperimentReport
    from .observe.analytics import Filters, StatsReport
    from .observe.feedback import Feedback
    from .sdk.gateway import InProcessGateway

__all__ = ["AsyncRouter"]


class RouterOptions(TypedDict, total=False):
    """The keyword arguments of `AsyncRouter` and `Router` besides the config."""

    transports: Mapping[str, object] | None
    clock: Clock | None
    seed: int | None
    env: Mapping[str, str] | None
    strategies: Mapping[str, Strategy] | None
    implicit_providers: bool


class AsyncRouter:
    """An in-process LLM gateway with the ``openai.AsyncOpenAI`` client surface.

    Build it from a `Config`, a dict of the same shape, or nothing (providers
    are then found from the standard environment variables, such as
    ``OPENAI_API_KEY``); `from_file` reads YAML, TOML or JSON.

    Args:
        config: the configuration.
        transports: per provider name, an ``httpx.AsyncClient`` /
            ``httpx2.AsyncClient`` (proxies, mTLS, respx) or an llmroute
            `Transport` to use instead of the default engine.
        clock: the time source (tests inject one).
        seed: seeds the router's random choices (backoff jitter, weighted and
            latency-aware selection).
        env: the environment to read ``${VAR}`` and API keys from (default
            ``os.environ``).
        strategies: your own selection strategies by name (see
            `llmroute.routing.Strategy`), usable as a route's `strategy`.
        implicit_providers: whether ``model="provider/model"`` may name a
            provider the config does not list: ``mock``, the keyless presets
            (``ollama``, ``vllm``, ``lmstudio``) and providers whose key is in
            the environment. On by default in process; ``llmroute serve`` turns
            it off unless ``server.implicit_providers`` is set (see
            docs/security.md): a client must not reach what its operator did
            not configure.
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any] | None = None,
        *,
        transports: Mapping[str, object] | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        env: Mapping[str, str] | None = None,
        strategies: Mapping[str, Strategy] | None = None,
        implicit_providers: bool = True,
    ) -> None:
        environ = os.environ if env is None else env
        self.config = load_config(config if config is not None else {}, env=environ)
        self._clock = clock or SystemClock()
        prices = self._prices = PriceBook()
        rng = random.Random(seed)
        self._catalog = Catalog(
            self.config,
            clock=self._clock,
            prices=prices,
            transports=transports,
            env=environ,
            strategies=strategies,
            implicit_providers=implicit_providers,
        )
        self._health = HealthTracker(self.config.health)
        self._stats = LiveStats()
        self._rate_limits = RateLimitBoard()
        selector = Selector(self._stats, prices, rng, self._rate_limits)
        driver = AttemptDriver(self._clock, rng, self._health, self._stats, selector)
        self._shared: SharedHealth | None = None
        if self.config.state is not None:
            catalog = self._catalog
            self._shared = driver.shared = SharedHealth(
                self.config.state, self._health, self._clock,
                lambda: [t.key for t in catalog.targets()],
            )  # fmt: skip
        self._stages: list[Stage] = []
        # first: its before() runs before any stage may answer or refuse the request
        self._recorder = Recorder(
            self.config.logging, self.config.telemetry, clock=self._clock, catalog=self._catalog,
            prices=prices,
        )  # fmt: skip
        self._stages.append(self._recorder)
        # then rate limits, budgets and the cache, in their configured order (the
        # recorder reads what they decided from the request's RouteInfo)
        self._configured = build_stages(self.config, self._clock, prices)
        self._stages.extend(self._configured.ordered)
        experiments = experiment_hook(
            self.config, self._catalog, driver, self._clock, prices, self._recorder, rng
        )
        self._executor = RequestPipeline(
            self._catalog, self._clock, prices, driver, self._stages, experiments
        )
        executor = self._executor
        self._catalog.on_forget(
            RouteStateOwners(self._stats, self._health, self._rate_limits, selector, prices)
        )
        if (cache := self._configured.cache) is not None:
            self._catalog.on_forget(lambda route: cache.forget_route(route.key))
        self._state = RouterState()
        self.chat = AsyncChat(executor, self._state)
        self.embeddings = AsyncEmbeddings(executor, self._state)
        self.models = AsyncModels(self._catalog, int(self._clock.time()))
        self._responses_store: ResponseStore | None = store_from_config(
            self.config.responses, self._clock
        )
        self.responses = AsyncResponses(
            executor, self._state, self._responses_store, self.config.responses, self._clock
        )
        self._gateway: InProcessGateway | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Unpack[RouterOptions]) -> Self:
        """A router from a YAML, TOML or JSON config file (options as for the constructor)."""
        return cls(load_file(path, env=options.get("env")), **options)

    # -------------------------------------------------------------- what is configured

    def routes(self) -> dict[str, RouteView]:
        """Every configured route, by name: strategy, deadline, retry policy, targets and
        fallbacks, as read-only views."""
        return route_views(self._catalog)

    def providers(self) -> dict[str, ProviderView]:
        """Every known provider, by name: type, base URL, whether a key is set, the models
        routes use on it, as read-only views."""
        return provider_views(self._catalog)

    def add_stage(self, stage: Stage, *, before: str | None = None) -> None:
        """Run `stage` around every request (see `Stage`): at the end, or just before the
        stage named `before` (``recorder``, ``rate_limits``, ``budgets``, ``cache`` or one
        of yours).

        Stage names are unique: they key `RequestContext.state` and name the stage that
        answered a request (`Outcome.answered_by`). Add stages before serving requests.
        """
        if not isinstance(stage, Stage):
            raise TypeError(f"expected a llmroute Stage, got {stage!r}")
        names = [s.name for s in self._stages]
        if stage.name in names:
            raise ValueError(f"a stage named {stage.name!r} is already in the pipeline")
        if before is None:
            self._stages.append(stage)
        elif before in names:
            self._stages.insert(names.index(before), stage)
        else:
            raise ValueError(f"no stage named {before!r}: the stages are {names}")

    # -------------------------------------------------------------- health and statistics

    def cool_down(self, target: str, seconds: float, reason: str = "cooled down by hand") -> None:
        """Send target ``provider/model`` no traffic for `seconds` (capped by the health
        config's ``max_retry_after``), as a provider's ``Retry-After`` would: for a known
        outage or maintenance. A shorter cooldown never shortens a running one."""
        self._health.cool_down(target, self._clock.monotonic(), seconds, reason)

    def health(self) -> dict[str, TargetHealth]:
        """Each known target's health: circuit state, error ratio, cooldown end, last error."""
        now = self._clock.monotonic()
        return {t.key: self._health.snapshot(t.key, now) for t in self._catalog.targets()}

    async def shared_state(self) -> SharedStateStatus | None:
        """How the health shared through Redis (the `state` section) is doing: listening or
        not, why Redis cannot be used (a PING is sent), and the counters; None without
        shared state. See docs/reliability.md#shared-state."""
        shared = self._shared
        if shared is None:
            return None
        return shared.status(await shared.problem())

    def stats(self) -> dict[str, TargetStats]:
        """Each known target's live statistics: requests in flight, latency percentiles and
        moving averages, error ratio, and the provider's last reported rate limits."""
        now = self._clock.monotonic()
        return {
            t.key: replace(
                self._stats.snapshot(t.key),
                error_ratio=self._health.snapshot(t.key, now).error_ratio,
                rate_limit=self._rate_limits.state(t.key),
            )
            for t in self._catalog.targets()
        }

    # -------------------------------------------------------------- observability

    def add_hook(self, event: HookEvent, hook: Callable[..., object]) -> None:
        """Call `hook` on ``request_start``, ``attempt_end`` or ``request_end`` of every request.

        Hooks receive the `RequestRecord` (``attempt_end`` hooks also the
        `AttemptRecord`); they may be coroutine functions. See docs/observability.md.
        """
        self._recorder.add_hook(event, hook)

    def set_redactor(self, redactor: Redactor | None) -> None:
        """Pass every record through `redactor` before anything stores, traces or hooks it."""
        self._recorder.set_redactor(redactor)

    def add_sink(self, sink: Sink | str | Callable[[Sequence[RequestRecord]], object]) -> None:
        """Also write every record to `sink`: a `Sink`, a URL, or a function taking a batch."""
        self._recorder.add_sink(sink)

    def use_telemetry(
        self,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        *,
        enabled: bool = True,
    ) -> None:
        """Send spans and metrics to these OpenTelemetry providers (default: the global ones)."""
        self._recorder.use_telemetry(tracer_provider, meter_provider, enabled=enabled)

    def warm_up(self) -> None:
        """Load now what the first requests would load on their way: the HTTP engine
        (aiohttp and its TLS context) and genai-prices' data.

        Several tenths of a second on a small machine, spent on the event loop or in the
        log's worker thread (holding the GIL) during the first requests otherwise, long enough for a burst's
        Redis calls (rate limits, budgets) to time out and fail open. `llmroute serve`
        calls it before it reports ready; call it at start-up in a process that takes a
        burst at once. Blocking: call it before the event loop takes traffic.
        """
        import aiohttp  # noqa: F401

        self._prices.load()

    @property
    def recording(self) -> RecorderStatus:
        """The recorder's counters: queued, recorded, dropped, failed."""
        return self._recorder.status()

    async def flush(self) -> None:
        """Write every record queued so far to the sinks."""
        await self._recorder.flush()

    # -------------------------------------------------------------- cache, limits, budgets

    async def budgets(self) -> list[BudgetStatus]:
        """Every budget's spend and remaining dollars in its current window, per subject
        (each user, key, team, ... seen in the window so far); empty without budgets."""
        stage = self._configured.budgets
        return await stage.report() if stage is not None else []

    @property
    def cache(self) -> CacheStage | None:
        """The cache stage (its `stats`, `entries`, `drain()`); None without a cache."""
        return self._configured.cache

    def cache_stats(self) -> CacheStats | None:
        """The cache's hits, misses, bypasses, stores and savings; None without a cache."""
        stage = self._configured.cache
        return stage.stats if stage is not None else None

    def limit_stats(self) -> LimitStats:
        """The rate-limit and budget counters: allowed, refused, Redis failures and policy."""
        return self._configured.stats()

    async def drain(self) -> None:
        """Wait for the writes the cache, rate limits and budgets run off the request's path
        (stores and reconciliations sent to Redis, health changes shared), as `aclose` does;
        `flush` is the recorder's."""
        await self._configured.drain()
        if self._shared is not None:
            await self._shared.drain()

    def shadow_status(self) -> dict[str, ShadowStatus]:
        """Each experiment with shadow traffic: its shadow copies' counters (running,
        started, completed, dropped over `max_in_flight`...); see docs/experiments.md."""
        experiments = self._executor.experiments
        return experiments.shadow_status() if experiments is not None else {}

    @property
    def stage_failures(self) -> int:
        """How many times a stage's `after()` (or `ended()`) raised (each is logged, never
        raised to the caller)."""
        return self._executor.stage_failures

    async def check(self) -> list[str]:
        """What keeps the router from serving, such as a store it cannot reach (empty: ready).

        Each pipeline stage reports through `Stage.check`; the gateway's
        ``/ready`` answers 503 with these problems. With shared state, it also starts
        listening to the other routers and reads their state (see `degraded` for Redis
        being lost: not a problem that stops serving).
        """
        if self._shared is not None:
            await self._shared.start()
        problems = []
        for stage in self._stages:
            problem = await stage.check()
            if problem:
                problems.append(f"{stage.name}: {problem}")
        if self._responses_store is not None:
            problem = await self._responses_store.check()
            if problem:
                problems.append(f"responses store: {problem}")
        return problems

    async def degraded(self) -> list[str]:
        """What works, but not as configured (empty: everything). Today: health shared
        through Redis (`state`) while Redis cannot be reached, when each router decides on
        its own state. The gateway's ``/ready`` reports these and still answers 200: a load
        balancer must not take every replica out because the state they share is down."""
        shared = self._shared
        if shared is None:
            return []
        problem = await shared.problem()
        if problem is None:
            return []
        why = problem.removeprefix("state: ")  # the connection names its purpose
        return [f"shared state: {why}; deciding on this process's own health state"]

    async def analytics(
        self,
        *,
        by: str | Sequence[str] = (),
        since: float | datetime | str | None = None,
        until: float | datetime | str | None = None,
        where: Sequence[str] = (),
        route: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        user: str | None = None,
        key: str | None = None,
        team: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> StatsReport:
        """Request counts, error rates, latency and TTFT percentiles, tokens, cost and cache
        hits from the log store (`logging.store`), after flushing.

        Group `by` provider, model, target, route, user, key (the gateway key's
        name), team, session, status, error_type, cache, ``property.NAME``, hour
        or day. `since` and `until` take Unix seconds, a datetime, an ISO date or
        a duration ago (``"24h"``); `where` takes ``key=value`` conditions.
        """
        from .observe.analytics import make_filters

        filters = make_filters(
            since=since, until=until, where=where, route=route, provider=provider, model=model,
            user=user, key=key, team=team, properties=properties,
        )  # fmt: skip
        return await self._recorder.analytics(
            by=[by] if isinstance(by, str) else by, filters=filters
        )

    def recorder_query(self, *, by: Sequence[str], filters: Filters) -> StatsReport:
        """`analytics` with filters already made (`observe.analytics.make_filters`), without
        flushing, in the calling thread. Kept for code written against earlier releases;
        `analytics` is the documented way."""
        return self._recorder.query(by=by, filters=filters)

    # -------------------------------------------------------------- experiments

    async def feedback(
        self, request_id: str, name: str, value: bool | float, *,
        comment: str | None = None, key: str | None = None,
    ) -> Feedback:  # fmt: skip
        """Store feedback on a request (``thumbs_up``: a boolean or a number, with an optional
        comment) in the log store, however late; with `key`, only on a request made with
        that gateway key. `UnknownRequest` when no recorded request has the id (records are
        flushed and awaited first). See docs/experiments.md."""
        from .experiments.feedback import request_feedback, store_feedback

        given = request_feedback(
            request_id, name, value, comment=comment, key=key, now=self._clock.time()
        )
        return await store_feedback(self._recorder, self.config.logging, given, scope=key)

    async def sticky_feedback(
        self, experiment: str, sticky_key: str, name: str, value: bool | float, *,
        comment: str | None = None, key: str | None = None,
    ) -> Feedback:  # fmt: skip
        """Store feedback on everything `sticky_key` (the experiment's user, session or
        key) did in `experiment`, as `feedback` does on one request."""
        from .experiments.feedback import sticky_key_feedback, store_feedback

        given = sticky_key_feedback(
            experiment, sticky_key, name, value, comment=comment, key=key, now=self._clock.time()
        )
        return await store_feedback(self._recorder, self.config.logging, given, scope=key)

    async def experiment_report(
        self, name: str, *, since: float | datetime | str | None = None,
        until: float | datetime | str | None = None, include_off_variant: bool = False,
    ) -> ExperimentReport:  # fmt: skip
        """Experiment `name`'s report from the log store, after flushing: each variant's
        figures and feedback, and each candidate against control with confidence intervals
        and a plain sentence per metric (docs/experiments.md)."""
        from .experiments.report import query_report

        await self.flush()
        store = self._recorder.store
        return await asyncio.to_thread(
            query_report, store, name, since=since, until=until,
            include_off_variant=include_off_variant,
        )  # fmt: skip

    async def count_tokens(self, **params: Unpack[ChatCreateParams]) -> int:
        """How many input tokens a chat request is, as the first target of its route whose
        provider counts tokens counts them (Anthropic's ``count_tokens`` endpoint): the
        gateway's ``POST /v1/messages/count_tokens``. Nothing is charged, limited, cached or
        recorded. `RequestError` when no target of the route can count (estimate with
        `llmroute._tokens` then, as the gateway does)."""
        if self._state.closed:
            raise RouterClosed()
        api, client = split_client_params(dict(params))
        request = validate_chat_request(api)
        options, extra = request_options(client)
        tokens, _ = await self._executor.count_tokens(request, options, extra)
        return tokens

    # -------------------------------------------------------------- SDK clients in process

    @property
    def gateway(self) -> InProcessGateway:
        """The gateway application serving this router in process (made on first use, closed
        with the router); the SDK clients below send their requests to it."""
        if self._state.closed:
            raise RouterClosed()
        if self._gateway is None:
            from .sdk.gateway import InProcessGateway

            self._gateway = InProcessGateway(self)
        return self._gateway

    def http_client(self, **options: Any) -> httpx2.AsyncClient:
        """An ``httpx2.AsyncClient`` served by this router in process (docs/sdk-clients.md)."""
        from .sdk import clients

        return clients.async_http_client(self.gateway, **options)

    def openai_client(self, **options: Any) -> openai.AsyncOpenAI:
        """A genuine ``openai.AsyncOpenAI`` served by this router in process; `options` as for
        it, but ``base_url`` and ``http_client`` (see docs/sdk-clients.md)."""
        from .sdk import clients

        return clients.async_openai_client(self.gateway, **options)

    def anthropic_client(self, **options: Any) -> anthropic.AsyncAnthropic:
        """A genuine ``anthropic.AsyncAnthropic`` served by this router in process."""
        from .sdk import clients

        return clients.async_anthropic_client(self.gateway, **options)

    async def aclose(self) -> None:
        """Close the in-process gateway, the stages (the recorder's sinks, Redis connections)
        and every provider connection pool. Safe to call more than once; requests after it
        raise `RuntimeError`.

        A router left open releases its connection pools by itself, like
        ``openai.AsyncOpenAI()``: when it is garbage-collected, or when the event loop
        that opened them ends (``asyncio.run`` returning); see docs/sdk-clients.md."""
        if not self._state.closed:
            self._state.closed = True
            if self._gateway is not None:
                await self._gateway.aclose()
            if (experiments := self._executor.experiments) is not None:
                await experiments.aclose()  # shadow copies still running: recorded, cancelled
            for stage in self._stages:
                await stage.aclose()
            if self._responses_store is not None:
                await self._responses_store.aclose()
            if self._shared is not None:
                await self._shared.aclose()
            await self._catalog.aclose()

    async def __aenter__(self) -> Self:
        if self._shared is not None:
            await self._shared.start()  # knowing the fleet's state before the first request
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
