"""The `rate_limits` and `budgets` sections.

Each is a list of rules, or a mapping of settings with the rules under `rules`::

    rate_limits:
      - {per: user, requests: 60/min, tokens: 100k/min}
    budgets:
      backend: redis://localhost:6379/0
      rules:
        - {per: team, usd: 100/month}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .._units import PositiveDuration, parse_rate
from ..cache.config import check_backend_url
from .windows import BudgetAmount, parse_budget

__all__ = [
    "BudgetRule",
    "BudgetsConfig",
    "Per",
    "Rate",
    "RateLimitRule",
    "RateLimitsConfig",
    "UnpricedPrice",
]

_STRICT = ConfigDict(extra="forbid", defer_build=True)
_PER = re.compile(r"user|key|team|route|global|property:.+")
_PER_PATTERN = r"^(user|key|team|route|global|property:.+)$"


def _per(value: object) -> object:
    if isinstance(value, str) and not _PER.fullmatch(value):
        raise ValueError(
            f"expected user, key, team, route, global or property:<name>, got {value!r}"
        )
    return value


#: Who a rule counts for: each user, key, team, route or property value, or everyone together.
Per = Annotated[
    str,
    BeforeValidator(_per),
    WithJsonSchema({"type": "string", "pattern": _PER_PATTERN,
                    "description": "user, key, team, route, global or property:<name>"}),
]  # fmt: skip


def _rate(value: object) -> tuple[float, float]:
    amount, period = parse_rate(value)
    if amount <= 0:
        raise ValueError(f"a rate limit needs an amount > 0, got {value!r}")
    return amount, period


#: ``(amount, period in seconds)`` from ``60/min``, ``100k/h``, ``10/30s``.
Rate = Annotated[
    tuple[float, float],
    BeforeValidator(_rate),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[kKmM]?\s*/\s*\d*(\.\d+)?\s*[a-zA-Z]+\s*$",
                    "description": "an amount per period, such as 60/min, 100k/h or 10/30s"}),
]  # fmt: skip

BudgetUsd = Annotated[
    BudgetAmount,
    BeforeValidator(parse_budget),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\$?\d+(\.\d+)?[kK]?\s*/\s*\d*\s*[a-zA-Z]+\s*$",
                    "description": "US dollars per calendar window, such as 5/day or 100/month"}),
]  # fmt: skip


class RateLimitRule(BaseModel):
    """One rate-limit rule: a request rate, a token rate, or both, counted per `per`.

    Attributes:
        per: who the rule counts for: each ``user``, ``key``, ``team``,
            ``route`` or ``property:<name>`` value separately, or ``global``
            (every request together). A request without that attribute is
            not counted by the rule.
        requests: requests allowed per period (``60/min``).
        tokens: tokens (input and output) allowed per period (``100k/min``).
        burst: requests allowed at once (default: the whole `requests`
            amount). Over any span of time t, at most ``burst + rate * t``
            requests pass.
    """

    model_config = _STRICT
    per: Per
    requests: Rate | None = None
    tokens: Rate | None = None
    burst: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _something_to_count(self) -> RateLimitRule:
        if self.requests is None and self.tokens is None:
            raise ValueError("a rate-limit rule needs `requests`, `tokens` or both")
        if self.burst is not None and self.requests is None:
            raise ValueError("`burst` applies to `requests`, which this rule does not set")
        return self


def _rules_shorthand(data: Any) -> Any:
    return {"rules": data} if isinstance(data, list) else data


def _with_list_shorthand(table: JsonSchemaValue, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
    rules = handler.resolve_ref_schema(table)["properties"]["rules"]
    return {"anyOf": [rules, table]}


class _Shared(BaseModel):
    """Settings the rate-limit and budget sections share."""

    model_config = _STRICT
    backend: str = "memory://"
    before_cache: bool = False
    when_unavailable: Literal["allow", "refuse"] = "allow"
    output_estimate: int = Field(default=512, ge=0)
    prefix: str = Field(default="llmroute", min_length=1)
    timeout: PositiveDuration = 0.25
    retry_interval: PositiveDuration = 1.0

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        return _rules_shorthand(data)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        return check_backend_url(value)

    @field_validator("prefix")
    @classmethod
    def _no_braces(cls, value: str) -> str:
        if "{" in value or "}" in value:
            # the keys' Redis Cluster hash tag is built around the prefix (see docs/limits.md)
            raise ValueError(f"a key prefix cannot hold '{{' or '}}', got {value!r}")
        return value


class RateLimitsConfig(_Shared):
    """The `rate_limits` section: rules, and where their state lives.

    Attributes:
        rules: the rules; every rule that applies to a request must allow it.
        backend: ``memory://`` (this process) or ``redis://host:port/db``
            (shared, exact across processes and machines).
        before_cache: check limits before the cache lookup, so cache hits
            count too (by default a hit is free of limits).
        when_unavailable: when Redis cannot be reached: ``allow`` the request
            (fail open) or ``refuse`` it (fail closed). Logged and counted.
        output_estimate: output tokens reserved for a request without
            `max_tokens` (reconciled with the real usage afterwards).
        prefix: the first part of every Redis key.
        timeout: the Redis socket timeout (connecting, and each command).
        retry_interval: after a Redis failure, how long the policy applies
            before Redis is tried again.
    """

    rules: list[RateLimitRule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _distinct(cls, rules: list[RateLimitRule]) -> list[RateLimitRule]:
        seen = set()
        for rule in rules:
            shape = (rule.per, rule.requests, rule.tokens, rule.burst)
            if shape in seen:
                raise ValueError(f"the rule {rule.model_dump(exclude_none=True)} is listed twice")
            seen.add(shape)
        return rules

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _with_list_shorthand(handler(core_schema), handler)


class BudgetRule(BaseModel):
    """One budget: US dollars per calendar window, counted per `per`.

    Attributes:
        per: who the budget is for: each ``user``, ``key``, ``team``,
            ``route`` or ``property:<name>`` value separately, or ``global``.
        usd: dollars per window: ``5/day``, ``20/week``, ``100/month``, ``1/h``.
    """

    model_config = _STRICT
    per: Per
    usd: BudgetUsd


class UnpricedPrice(BaseModel):
    """The price budgets assume for a model whose price is unknown (USD per million tokens).

    Attributes:
        input: per million input tokens.
        output: per million output tokens.
    """

    model_config = _STRICT
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class BudgetsConfig(_Shared):
    """The `budgets` section: rules, and where spend is kept.

    Money fails closed by default: a request a budget applies to is refused when its
    route could be served by a model without a known price (``unpriced: refuse``), and
    when the shared store cannot be reached (``when_unavailable: refuse``).

    Attributes:
        rules: the budgets; a request is refused while any budget that applies
            to it is spent.
        timezone: the zone whose midnights start days, weeks and months (an
            IANA name such as ``Europe/Paris``).
        unpriced: what a budget does with a target whose price is unknown (no
            `price` in its config and none in genai-prices): ``refuse`` the
            request (the default), count it at a conservative price given here
            (``{input: 30, output: 60}``, USD per million tokens), or ``allow``
            it at 0 USD (logged and counted as `unpriced`).
        backend, before_cache, prefix, timeout, retry_interval: as for
            `RateLimitsConfig`.
        when_unavailable: as for `RateLimitsConfig`, but ``refuse`` by default:
            a budget that cannot be checked lets no money through.
        output_estimate: output tokens assumed for a request without
            `max_tokens` when its cost is reserved (times `n`).
    """

    rules: list[BudgetRule] = Field(default_factory=list)
    timezone: str = "UTC"
    unpriced: Literal["refuse", "allow"] | UnpricedPrice = "refuse"
    when_unavailable: Literal["allow", "refuse"] = "refuse"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as UTC)"
            ) from None
        return value

    @field_validator("rules")
    @classmethod
    def _distinct(cls, rules: list[BudgetRule]) -> list[BudgetRule]:
        seen = set()
        for rule in rules:
            if (rule.per, rule.usd) in seen:
                raise ValueError(f"the budget {rule.per}: {rule.usd} is listed twice")
            seen.add((rule.per, rule.usd))
        return rules

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _with_list_shorthand(handler(core_schema), handler)
