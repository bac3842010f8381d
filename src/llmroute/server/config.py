"""The ``server`` section of the configuration: how `llmroute serve` listens and whom it lets in.

Plain pydantic models, imported by the configuration itself; nothing here
needs the ``server`` extra.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .._units import PositiveDuration

__all__ = ["DEFAULT_MAX_BODY_SIZE", "DEFAULT_MAX_HEAD_SIZE", "GatewayKeyConfig", "ServerConfig"]

_STRICT = ConfigDict(extra="forbid", defer_build=True)
_HASHED = re.compile(r"sha256:[0-9a-f]{64}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # RFC 9110 token, lower case

#: Provider response headers `forward_provider_headers` may not name, and why.
_FRAMING = ("connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
            "content-length", "content-encoding", "content-type", "date", "server")  # fmt: skip
_NOT_FORWARDABLE: dict[str, str] = dict.fromkeys(
    _FRAMING, "it belongs to the connection or the body's framing, not the answer"
) | {
    "set-cookie": "it carries the provider's session with the operator's account",
    "set-cookie2": "it carries the provider's session with the operator's account",
    "retry-after": "the gateway sets it from its own decision (a provider's wait is "
                   "already honoured by failover and cooldowns)",
    "openai-organization": "it names the operator's organization",
    "x-request-id": "the gateway sends its own request id under this name",
    "x-should-retry": "the gateway sets it from its own decision",
}  # fmt: skip
_NOT_FORWARDABLE_PREFIXES: dict[str, str] = {
    "proxy-": "it belongs to the connection",
    "x-llmroute-": "the gateway's own headers have these names",
    "x-ratelimit-": "they describe the operator's account, shared by every key, under the "
                    "names the gateway uses for a key's own limits",
    "anthropic-ratelimit-": "they describe the operator's account, shared by every key",
}  # fmt: skip


def _forwardable(name: str) -> str:
    """`name` in lower case, or the ValueError that says why it cannot be forwarded."""
    low = name.lower()
    if not _HEADER_NAME.fullmatch(low):
        raise ValueError(f"{name!r} is not a header name")
    why = _NOT_FORWARDABLE.get(low) or next(
        (why for prefix, why in _NOT_FORWARDABLE_PREFIXES.items() if low.startswith(prefix)),
        None,
    )
    if why is not None:
        raise ValueError(f"the provider header {name!r} cannot be forwarded: {why}")
    return low


#: The shortest plain key accepted: shorter ones can be guessed.
MIN_PLAIN_KEY_LENGTH = 16
#: The default limit on a request body: 10 MiB.
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
#: The default limit on a request's head (request line and headers): 32 KiB, nginx's
#: default (``large_client_header_buffers 4 8k``); Node.js allows 16 KiB.
DEFAULT_MAX_HEAD_SIZE = 32 * 1024

Size = Annotated[
    ByteSize,
    Field(gt=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$"},
            ],
            "description": "bytes, or a size such as 512KB, 10MB or 10MiB",
        }
    ),
]


class GatewayKeyConfig(BaseModel):
    """A gateway API key: who may call the gateway, as whom, and which routes.

    Clients send the key as ``Authorization: Bearer <key>`` (the OpenAI SDKs'
    ``api_key``).

    Attributes:
        name: the key's name: recorded with every request (`RequestOptions.key`)
            and used by rate limits and budgets; never the key itself.
        key: ``sha256:<64 hex digits>`` (the SHA-256 of the key; `llmroute
            new-key` makes one), or the plain key (accepted with a warning at
            start-up; at least 16 characters).
        user: the user requests with this key are made for; a request's
            ``x-llmroute-user`` header may not name another.
        team: the team requests with this key are billed to.
        routes: the routes and ``provider/model`` names this key may use, as
            names or shell-style patterns (``openai/*``, ``*``); unset: all.
        admin: whether this key may read what concerns every key (``/metrics``:
            every key's names, volumes and costs).
        direct: whether this key may name ``provider/model`` directly; ``false``:
            configured routes only (403 otherwise), so the operator's routes,
            with their limits and fallbacks, are the only way in.
        users: for a key not bound to a `user`, whom a request's
            ``x-llmroute-user`` may name: ``none`` (the default: the header
            is refused with 403), ``any``, or a list of names and shell-style
            patterns. Users a key names count apart from other keys' in
            ``per: user`` limits and budgets. Not allowed with `user`.
    """

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    key: SecretStr
    user: str | None = Field(default=None, min_length=1)
    team: str | None = Field(default=None, min_length=1)
    routes: list[str] | None = None
    admin: bool = False
    direct: bool = True
    users: Literal["none", "any"] | list[Annotated[str, Field(min_length=1)]] = "none"

    @field_validator("key")
    @classmethod
    def _hashed_or_long_enough(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if text.lower().startswith("sha256:"):
            if not _HASHED.fullmatch(text.lower()):
                raise ValueError("expected 'sha256:' followed by 64 hexadecimal digits")
            return SecretStr(text.lower())
        if len(text) < MIN_PLAIN_KEY_LENGTH:
            raise ValueError(
                f"a plain key needs at least {MIN_PLAIN_KEY_LENGTH} characters; better, store "
                "its 'sha256:<hex>' hash (see `llmroute new-key`)"
            )
        return SecretStr(text)

    @model_validator(mode="after")
    def _users_only_when_unbound(self) -> GatewayKeyConfig:
        if self.user is not None and "users" in self.model_fields_set:
            raise ValueError(
                f"users: key {self.name!r} is bound to user {self.user!r} and acts for no "
                "other; remove `users` (or `user`)"
            )
        return self

    @property
    def hashed(self) -> bool:
        """Whether the key is stored as its SHA-256 hash."""
        return self.key.get_secret_value().startswith("sha256:")


class ServerConfig(BaseModel):
    """How `llmroute serve` runs the HTTP gateway.

    Attributes:
        host: the address to listen on. Without `keys`, only a loopback
            address is allowed unless `allow_unauthenticated` is set.
        port: the port to listen on.
        workers: server processes; in-memory rate limits, budgets and cache
            are then per process (see docs/server.md).
        keys: the gateway keys (see `GatewayKeyConfig`); none: no
            authentication.
        allow_unauthenticated: allow listening on a non-loopback address
            without keys.
        max_body_size: the largest request body accepted (413 beyond).
        body_timeout: the longest a client may take to send a request body
            (408 beyond): slow senders cannot hold a connection open.
        shutdown_timeout: on shutdown, how long in-flight requests and streams
            may take to finish before they are cancelled.
        keep_alive: how long an idle keep-alive connection stays open (longer
            than a load balancer's idle timeout avoids resets between them).
        max_connections: requests being answered at once at most (a connection
            counts while it has a complete request head and its answer is not
            sent); more are answered 503 (unset: no limit). Connections still
            sending a head, or idle between requests, do not count: `head_timeout`
            and `keep_alive` bound them.
        metrics: ``GET /metrics``: ``auto`` (the default: ``admin`` when keys are
            configured, else ``public``, which without keys means loopback
            only), ``admin`` (needs a key marked ``admin: true``), ``key`` (any
            gateway key: each then sees every key's data), ``public`` or ``off``.
        implicit_providers: let clients name providers the config does not list
            (``mock``, ``ollama``, ``vllm``, ``lmstudio``, environment-detected
            ones) in ``model="provider/model"``; off: only configured providers
            are reachable (providers from the environment count as configured
            when no config file is served).
        upstream_errors: what clients see of an upstream's error text:
            ``scrub`` it of credentials, URLs and internal hosts (default),
            ``generic`` (only the kind of failure), or ``pass`` it unchanged.
        access_log: log one line per request (off: the request log and the
            metrics have more).
        max_head_size: the largest request head (request line and headers)
            accepted; 431 beyond, then the connection is closed. Counted as it
            arrives, before any key is checked.
        max_headers: the most request headers accepted (431 beyond).
        head_timeout: how long a connection may take to send a complete request
            head, from its opening (and from the first byte of each later request
            on a kept-alive connection); then it is closed (408 if part of a head
            had arrived).
        max_body_in_flight: the request bodies being read or answered at once,
            in bytes, across all requests; a request that would pass it is answered
            503 (retry later).
        max_json_values: the most JSON values (objects, arrays, strings, numbers,
            literals) in a request body; counted on the bytes before they are
            parsed (413 beyond).
        max_json_depth: the deepest nesting of JSON objects and arrays in a body
            (413 beyond).
        max_messages: the most ``messages`` in a chat or messages request (413
            beyond).
        max_content_parts: the most content parts (entries of list-valued
            ``content`` and ``system``) across a request's messages (413 beyond).
        max_n: the most choices (``n``) a request may ask for (400 beyond): each is
            paid for, and multiplies a budget's estimate.
        max_output_tokens: the most ``max_tokens``/``max_completion_tokens`` a
            request may ask for (400 beyond); unset: the model's own limit.
        forward_provider_headers: the provider response headers passed on to
            clients, from the attempt whose answer is sent (case-insensitive);
            no other. Headers of the connection, cookies, the operator's
            rate-limit headers and the gateway's own names are refused
            (docs/security.md#provider-response-headers).
    """

    model_config = _STRICT
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    keys: list[GatewayKeyConfig] = Field(default_factory=list)
    allow_unauthenticated: bool = False
    max_body_size: Size = ByteSize(DEFAULT_MAX_BODY_SIZE)
    body_timeout: PositiveDuration = 30.0
    shutdown_timeout: PositiveDuration = 30.0
    keep_alive: PositiveDuration = 5.0
    max_connections: int | None = Field(default=None, ge=1)
    metrics: Literal["auto", "admin", "key", "public", "off"] = "auto"
    access_log: bool = False
    implicit_providers: bool = False
    upstream_errors: Literal["scrub", "pass", "generic"] = "scrub"
    # bounds on what a client may make the gateway hold (docs/security.md)
    max_head_size: Size = ByteSize(DEFAULT_MAX_HEAD_SIZE)
    max_headers: int = Field(default=100, ge=8, le=10_000)
    head_timeout: PositiveDuration = 10.0
    max_body_in_flight: Size = ByteSize(128 * 1024 * 1024)
    max_json_values: int = Field(default=300_000, ge=1)
    max_json_depth: int = Field(default=64, ge=2, le=200)
    max_messages: int = Field(default=2048, ge=1)
    max_content_parts: int = Field(default=10_000, ge=1)
    max_n: int = Field(default=16, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    forward_provider_headers: list[str] = Field(
        default_factory=lambda: ["openai-processing-ms"], max_length=64
    )

    @property
    def metrics_access(self) -> Literal["admin", "key", "public", "off"]:
        """Who may read ``/metrics``, with ``auto`` decided."""
        if self.metrics == "auto":
            return "admin" if self.keys else "public"
        return self.metrics

    @field_validator("forward_provider_headers")
    @classmethod
    def _forwardable_headers(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_forwardable(name) for name in value))

    @model_validator(mode="after")
    def _unique_keys(self) -> ServerConfig:
        names: set[str] = set()
        values: set[str] = set()
        for i, key in enumerate(self.keys):
            if key.name in names:
                raise ValueError(f"keys.{i}.name: the name {key.name!r} is used twice")
            value = key.key.get_secret_value()
            if value in values:
                raise ValueError(f"keys.{i}.key: the same key is given twice")
            names.add(key.name)
            values.add(value)
        return self
