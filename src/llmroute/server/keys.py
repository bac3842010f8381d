"""Gateway keys: who is calling, checked in constant time; keys are never logged.

Each configured key is kept only as its SHA-256 digest. A presented key is
hashed and compared with every configured digest by `hmac.compare_digest`,
without stopping at a match, so the time taken says nothing about which key,
or how much of one, matched.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .._errors import ConfigError, UnknownModel
from .._request import RequestOptions
from .config import GatewayKeyConfig
from .errors import HTTPError

__all__ = ["ANONYMOUS", "GatewayIdentity", "KeyStore", "hash_key", "new_key"]

logger = logging.getLogger("llmroute.server")

_BEARER = b"bearer "
#: Longer ``Authorization`` values are refused without hashing them.
_MAX_KEY_BYTES = 1024


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` form of a key, as `GatewayKeyConfig.key` stores it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A new random gateway key (``lr-`` and 43 URL-safe characters: 256 bits)."""
    return "lr-" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True, eq=False)
class GatewayIdentity:
    """Who a request comes from: a key's name, user, team, allowed routes, and the users its
    requests may name.

    `options` are the `RequestOptions` of a request that sends no control
    header (built once per key). `users`: the names and patterns a request's
    ``x-llmroute-user`` may give (None: any; empty: none); a key bound to a
    `user` may name only that user.
    """

    name: str | None
    user: str | None
    team: str | None
    routes: tuple[str, ...] | None
    options: RequestOptions
    users: tuple[str, ...] | None = None
    #: Whether ``provider/model`` addresses are allowed; if not, only `route_names`.
    direct: bool = True
    route_names: frozenset[str] = frozenset()

    def allows(self, model: str) -> bool:
        """Whether this identity may use `model` (a route name or ``provider/model``)."""
        if not self.direct and model not in self.route_names:
            return False
        return _matches(model, self.routes)

    def visible(self, exc: UnknownModel) -> UnknownModel:
        """`exc` as this identity may see it: for a key restricted to some routes, an
        error that lists only what the key may use, so it learns nothing of the other
        routes, nor of the providers, from a wrong name (unrestricted: `exc` itself)."""
        routes = self.routes
        if routes is None:
            return exc
        available = exc.available
        usable = [name for name in available if self.allows(name)]
        # and the key's own provider/model grants, on providers that exist
        usable += [
            name
            for name in routes
            if f"{name.partition('/')[0]}/*" in available and name not in usable
        ]
        listed = ", ".join(usable) or "(nothing)"
        return UnknownModel(
            f"unknown model {exc.model!r}; this key may use: {listed}",
            model=exc.model,
            available=usable,
        )

    def may_name(self, user: str) -> bool:
        """Whether a request of this identity may act for `user` (``x-llmroute-user``)."""
        if self.user is not None:
            return user == self.user
        return _matches(user, self.users)


def _matches(name: str, patterns: tuple[str, ...] | None) -> bool:
    """Whether `name` is one of `patterns` or matches one (None: everything matches)."""
    if patterns is None:
        return True
    return any(name == pattern or fnmatchcase(name, pattern) for pattern in patterns)


#: The identity of every request when no key is configured.
ANONYMOUS = GatewayIdentity(None, None, None, None, RequestOptions())


def _unauthorized(message: str) -> HTTPError:
    return HTTPError(
        401, message, code="invalid_api_key", headers=[(b"www-authenticate", b"Bearer")]
    )


class KeyStore:
    """The configured keys, as digests; `authenticate` maps a request's key to its identity."""

    def __init__(self, keys: Sequence[GatewayKeyConfig], routes: Collection[str] = ()) -> None:
        self._keys: list[tuple[bytes, GatewayIdentity]] = []
        #: The names of the keys marked ``admin: true``.
        self.admins = frozenset(key.name for key in keys if key.admin)
        for i, key in enumerate(keys):
            _check_routes(key, i, routes)
            secret = key.key.get_secret_value()
            if key.hashed:
                digest = bytes.fromhex(secret.removeprefix("sha256:"))
            else:
                logger.warning(
                    "gateway key %r is written in plain text in the configuration; store its "
                    "hash instead: key: %s",
                    key.name,
                    hash_key(secret),
                )
                digest = hashlib.sha256(secret.encode()).digest()
            # a user the key is bound to is the operator's word; one it names is counted
            # within the key (`user_scope`), so it cannot spend another key's user's quota
            scope = None if key.user is not None else key.name
            options = RequestOptions(key=key.name, user=key.user, team=key.team, user_scope=scope)
            routes_allowed = tuple(key.routes) if key.routes is not None else None
            users = key.users
            names = None if users == "any" else () if users == "none" else tuple(users)
            identity = GatewayIdentity(
                key.name, key.user, key.team, routes_allowed, options, names,
                direct=key.direct, route_names=frozenset(routes),
            )  # fmt: skip
            self._keys.append((digest, identity))

    @property
    def required(self) -> bool:
        """Whether requests must carry a key (some are configured)."""
        return bool(self._keys)

    def authenticate(self, authorization: bytes | None) -> GatewayIdentity:
        """The identity of an ``Authorization: Bearer <key>`` header; `HTTPError` 401 otherwise."""
        if not self._keys:
            return ANONYMOUS
        if authorization is None:
            raise _unauthorized(
                "missing API key: send it as 'Authorization: Bearer <key>' (the OpenAI SDKs' api_key)"
            )
        if authorization[:7].lower() != _BEARER or len(authorization) > _MAX_KEY_BYTES:
            raise _unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        digest = hashlib.sha256(authorization[7:].strip()).digest()
        found: GatewayIdentity | None = None
        for candidate, identity in self._keys:  # every one: no early exit
            if hmac.compare_digest(digest, candidate):
                found = identity
        if found is None:
            raise _unauthorized("invalid API key")
        return found


def _check_routes(key: GatewayKeyConfig, index: int, routes: Collection[str]) -> None:
    """A key's plain route names (not patterns, not ``provider/model``) must exist."""
    if key.routes is None:
        return
    for j, name in enumerate(key.routes):
        if "/" in name or any(c in name for c in "*?["):
            continue
        if name not in routes:
            raise ConfigError(
                f"unknown route {name!r}; routes: {', '.join(sorted(routes)) or '(none)'}",
                path=f"server.keys.{index}.routes.{j}",
            )
