"""The configuration of experiments: the top-level `experiments` and `prompts` sections.

Strict like every section: an unknown key, a variant that changes nothing it
could, a shadow of a variant that does not exist, are errors that name their
path. What needs the rest of the document (the route an experiment runs on,
the template a variant names) is checked by `check_references` once the whole
configuration is validated.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .._config_target import TargetConfig
from .._errors import ConfigError
from .._request import ChatRequest

__all__ = [
    "CONTROL",
    "ExperimentConfig",
    "PromptTemplate",
    "ShadowConfig",
    "StickyBy",
    "VariantConfig",
    "check_references",
    "template_fields",
]

_STRICT = ConfigDict(extra="forbid", defer_build=True)

#: The variant that is the route as configured: every experiment has one.
CONTROL = "control"

#: What keeps a request in its variant: the request's user, session, gateway key, or
#: nothing (``request``: each request is assigned on its own).
StickyBy = Literal["user", "session", "key", "request"]

#: An experiment's or a variant's name: it appears in records, response headers and the
#: ``x-llmroute-variant: <experiment>=<variant>`` request header.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: A template variable's name: lowercase, as header names are (``x-llmroute-prompt-<name>``).
_VARIABLE = re.compile(r"[a-z_][a-z0-9_]{0,63}")
#: Chat parameters a variant may not set: they are the request itself, not how it is asked.
_NOT_PARAMS = frozenset({"model", "messages", "stream", "stream_options"})
#: The keys that only `mode: adaptive` reads.
_ADAPTIVE_ONLY = ("goal", "stop_at", "floor", "min_samples", "refresh")


def _check_name(kind: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{kind} name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def template_fields(text: str) -> list[str | tuple[str]]:
    """A template's parts: literal text, and ``(name,)`` for each ``{name}`` to fill in.

    ``{{`` and ``}}`` are literal braces. Raises `ValueError` for anything but a plain
    lowercase name between braces (no format specs, conversions, indexes or attributes).
    """
    parts: list[str | tuple[str]] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(
            f"invalid template: {exc} (write {{{{ and }}}} for literal braces)"
        ) from exc
    for literal, name, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if name is None:
            continue
        if spec or conversion or not _VARIABLE.fullmatch(name):
            field = "{" + name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else ""
            ) + "}"  # fmt: skip
            raise ValueError(
                f"template variable {field} must be a lowercase name such as {{customer_name}} "
                "(letters, digits, '_'; no format specs); write {{ and }} for literal braces"
            )
        parts.append((name,))
    return parts


def _check_template(text: str) -> str:
    template_fields(text)
    return text


#: A prompt template: a system prompt with ``{variables}`` filled in per request.
PromptTemplate = Annotated[str, Field(min_length=1), AfterValidator(_check_template)]


class VariantConfig(BaseModel):
    """One variant of an experiment: what it changes about the route's requests.

    Attributes:
        weight: its share of the assignments (relative to the others' weights);
            0 turns it off (it can still be forced or shadowed).
        targets: serve it with these targets instead of the route's (strings or
            tables, as a route's); the route's own targets follow as a fallback.
        route: serve it with another route (its targets, strategy and settings);
            the experiment's route follows as a fallback.
        params: chat parameters set on its requests, over the caller's
            (``temperature``, ``max_tokens``, ``reasoning_effort``...).
        system: a system prompt for its requests (see `system_mode`).
        prompt: the name of a template of the top-level `prompts` section, used
            as the system prompt with its ``{variables}`` filled in per request.
        system_mode: ``replace`` the caller's system (and developer) messages,
            or ``prepend`` the variant's system prompt to them.
    """

    model_config = _STRICT
    weight: float = Field(ge=0, allow_inf_nan=False)
    targets: list[TargetConfig] | None = Field(default=None, min_length=1)
    route: str | None = Field(default=None, min_length=1)
    params: dict[str, Any] | None = None
    system: str | None = Field(default=None, min_length=1)
    prompt: str | None = Field(default=None, min_length=1)
    system_mode: Literal["replace", "prepend"] = "replace"

    @field_validator("params")
    @classmethod
    def _chat_params(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("params is empty: leave it out, or name a parameter")
        reserved = sorted(_NOT_PARAMS.intersection(value))
        if reserved:
            raise ValueError(
                f"a variant cannot set {', '.join(reserved)}: params change how a request "
                "is asked (temperature, max_tokens, ...), not the request itself"
            )
        sample = {"model": "m", "messages": [{"role": "user", "content": "x"}], **value}
        try:
            ChatRequest.model_validate(sample)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VariantConfig:
        if self.targets is not None and self.route is not None:
            raise ValueError("give `targets` or `route`, not both")
        if self.system is not None and self.prompt is not None:
            raise ValueError("give `system` or `prompt`, not both")
        if "system_mode" in self.model_fields_set and self.system is None and self.prompt is None:
            raise ValueError("system_mode applies to a `system` or `prompt`: give one")
        return self

    @property
    def changes_targets(self) -> bool:
        """Whether requests of this variant go to other targets than the route's."""
        return self.targets is not None or self.route is not None

    @property
    def changes_request(self) -> bool:
        """Whether this variant changes the request itself (parameters or prompt)."""
        return self.params is not None or self.system is not None or self.prompt is not None


class ShadowConfig(BaseModel):
    """Shadow traffic: a copy of some of the route's requests also sent to a variant.

    Attributes:
        variant: the variant the copies are sent to (not `control`).
        fraction: the share of the route's requests copied, in (0, 1].
        max_in_flight: copies running at once at most; more are dropped (and
            counted), never queued.
    """

    model_config = _STRICT
    variant: str = Field(min_length=1)
    fraction: float = Field(gt=0, le=1)
    max_in_flight: int = Field(default=64, ge=1, le=10_000)


def _day_or_moment(value: object) -> object:
    """A bare ``YYYY-MM-DD`` string as a date (a whole day), anything else as given."""
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return value
    return value


#: A window's bound: a date (a whole day) or a datetime (UTC unless it says otherwise).
Moment = Annotated[datetime | date, BeforeValidator(_day_or_moment)]


def _moment(value: datetime | date, *, end: bool) -> datetime:
    """A window's bound as an aware UTC datetime: a date starts (or, as an end, ends with)
    its whole day; a naive datetime is UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    moment = datetime.combine(value, time(), tzinfo=UTC)
    return moment + timedelta(days=1) if end else moment


class ExperimentConfig(BaseModel):
    """One experiment on one route.

    Attributes:
        route: the route whose requests take part (by name).
        sticky_by: what keeps a caller in their variant: ``user`` (the `user`
            option, else the request's ``user``), ``session``, ``key`` (the
            gateway key's name) or ``request`` (no stickiness: each request is
            assigned on its own and recorded ``unkeyed``).
        variants: the variants by name; `control` (the route as configured)
            is required and changes nothing.
        shadow: shadow traffic to one variant (see `ShadowConfig`); none when unset.
        mode: ``fixed`` (the weights as given) or ``adaptive`` (the weights move
            toward the variant that does best on `metric`).
        metric: the feedback metric adaptive mode optimises (required there).
        goal: adaptive mode: ``maximize`` the metric (the default: a thumbs up, a
            rating) or ``minimize`` it (a number of retries, a correction time).
        stop_at: adaptive mode: the probability of being best at which a
            variant wins and everyone gets it (default 0.95).
        floor: adaptive mode: the smallest share any variant keeps (default 0.05).
        min_samples: adaptive mode: the feedback values every variant needs
            before the experiment may stop (default 100).
        refresh: adaptive mode: seconds between two reads of the feedback that
            move the weights (default 30).
        starts, ends: the window in which the experiment runs (dates or
            datetimes, UTC unless they say otherwise; an `ends` date includes
            that day). Outside it the route behaves as configured.
    """

    model_config = _STRICT
    route: str = Field(min_length=1)
    sticky_by: StickyBy = "user"
    variants: dict[str, VariantConfig] = Field(min_length=2)
    shadow: ShadowConfig | None = None
    mode: Literal["fixed", "adaptive"] = "fixed"
    metric: str | None = Field(default=None, min_length=1)
    goal: Literal["maximize", "minimize"] | None = None
    stop_at: float | None = Field(default=None, gt=0.5, lt=1)
    floor: float | None = Field(default=None, ge=0, lt=0.5)
    min_samples: int | None = Field(default=None, ge=0)
    refresh: float | None = Field(default=None, gt=0, le=86_400)
    starts: Moment | None = None
    ends: Moment | None = None

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        for name in value:
            _check_name("variant", name)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        variants = self.variants
        control = variants.get(CONTROL)
        if control is None:
            raise ValueError(
                f"every experiment needs a {CONTROL!r} variant (the route as configured, which "
                "the others are compared with); give it weight 0 to send it no traffic"
            )
        if control.changes_targets or control.changes_request:
            raise ValueError(
                f"the {CONTROL!r} variant is the route as configured: it takes only a weight"
            )
        if not any(v.weight > 0 for v in variants.values()):
            raise ValueError(
                "every variant has weight 0: give one a weight, or remove the experiment "
                "(or set `ends`) to stop it"
            )
        shadow = self.shadow
        if shadow is not None:
            if shadow.variant not in variants:
                raise ValueError(
                    f"shadow.variant {shadow.variant!r} is not a variant; variants: "
                    + ", ".join(variants)
                )
            if shadow.variant == CONTROL:
                raise ValueError(
                    "shadow.variant cannot be 'control': shadow traffic tries a candidate "
                    "on real requests"
                )
        self._check_mode()
        start, end = self.window
        if start is not None and end is not None and start >= end:
            raise ValueError("`ends` must be after `starts`")
        return self

    def _check_mode(self) -> None:
        if self.mode == "fixed":
            given = [name for name in _ADAPTIVE_ONLY if getattr(self, name) is not None]
            if given:
                verb = "applies" if len(given) == 1 else "apply"
                raise ValueError(f"{', '.join(given)} {verb} to `mode: adaptive` only")
            return
        if self.metric is None:
            raise ValueError("`mode: adaptive` needs `metric`: the feedback metric to optimise")
        if sum(v.weight > 0 for v in self.variants.values()) < 2:
            raise ValueError(
                "`mode: adaptive` needs at least two variants with a weight above 0 to choose "
                "between (a weight-0 variant is off)"
            )
        floor = self.floor if self.floor is not None else 0.05
        if floor * len(self.variants) >= 1:
            raise ValueError(
                f"floor {floor} for {len(self.variants)} variants leaves nothing to adapt: "
                f"it must be below {1 / len(self.variants):.3g}"
            )

    @property
    def window(self) -> tuple[datetime | None, datetime | None]:
        """When the experiment starts and ends, as aware UTC datetimes (None: open)."""
        start = _moment(self.starts, end=False) if self.starts is not None else None
        end = _moment(self.ends, end=True) if self.ends is not None else None
        return start, end


def check_references(
    experiments: dict[str, ExperimentConfig],
    routes: dict[str, Any],
    prompts: dict[str, str],
    *,
    store: str | None = None,
) -> None:
    """Check what experiments name elsewhere in the configuration: their route (one
    experiment per route), the routes and templates their variants use, and the log
    `store` an adaptive experiment reads its feedback from.

    Raises:
        ConfigError: naming the path of the first bad reference.
    """
    known = ", ".join(sorted(routes)) or "(none)"
    taken: dict[str, str] = {}
    for name, experiment in experiments.items():
        path = f"experiments.{name}"
        try:
            _check_name("experiment", name)
        except ValueError as exc:
            raise ConfigError(str(exc), path=path) from None
        if experiment.route not in routes:
            raise ConfigError(
                f"unknown route {experiment.route!r}; routes: {known}", path=f"{path}.route"
            )
        other = taken.setdefault(experiment.route, name)
        if other != name:
            raise ConfigError(
                f"route {experiment.route!r} already has experiment {other!r}: one experiment "
                "per route (end one, or give the other its own route)",
                path=f"{path}.route",
            )
        for variant_name, variant in experiment.variants.items():
            where = f"{path}.variants.{variant_name}"
            if variant.route is not None:
                if variant.route not in routes:
                    raise ConfigError(
                        f"unknown route {variant.route!r}; routes: {known}", path=f"{where}.route"
                    )
                if variant.route == experiment.route:
                    raise ConfigError(
                        f"route {variant.route!r} is the experiment's own route: that is "
                        f"{CONTROL!r}",
                        path=f"{where}.route",
                    )
            if variant.prompt is not None and variant.prompt not in prompts:
                listed = ", ".join(sorted(prompts)) or "(none: add a top-level `prompts` section)"
                raise ConfigError(
                    f"unknown prompt {variant.prompt!r}; prompts: {listed}", path=f"{where}.prompt"
                )
        if experiment.mode == "adaptive" and store is None:
            raise ConfigError(
                "`mode: adaptive` reads its metric's feedback from the log store, and this "
                "configuration has none: set `logging.store` (for example sqlite:///llmroute.db)",
                path=f"{path}.mode",
            )
