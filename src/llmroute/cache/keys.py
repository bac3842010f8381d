"""Cache keys: a digest of the canonical form of a request.

The key covers what decides the answer:

- the operation (chat, embeddings or responses);
- where it is sent: the route's name and the sorted set of targets of the
  route and its fallbacks (narrowed by the request's `targets` option), so a
  route that now sends elsewhere does not serve old answers;
- the namespace (the cache's and the request's);
- the scope: whose requests share entries (`scope_line`: the gateway key, the
  team, the user within its key, or nobody's for ``global``), so one tenant
  never gets another's answer, nor learns from a hit what another asked;
- the request's parameters, minus those that do not change the answer:
  `stream`, `stream_options`, `user`, `metadata`, `store`, `service_tier` and
  `prompt_cache_key`, and none of llmroute's own options. ``None`` values are
  left out and ``n: 1`` is the same as no `n`. Parameters llmroute does not
  know (``extra_body``) count.

The canonical form is the request's JSON with its keys sorted, so two
requests that differ only in the order of keys inside a parameter (a tool's
JSON Schema, `response_format`) share a key. A request without free-form
mappings is serialized in schema order directly (its key order is fixed),
which is faster; one of text messages and plain parameters (most requests)
is encoded from the parameters it set and its messages' fields, faster still.
The form depends only on the request's content, so equal requests share a key.

The memory backend names a text-only chat request (`memory_key`) by a tuple
of the same values rather than a digest of their JSON: the process's own
dictionary hashes and compares it exactly, at a third of the cost of
serialising and hashing. Values that compare equal (``1`` and ``1.0``) share
an entry there, as they would an answer.

Fast paths, measured with callgrind: the fixed and plain forms took the canonical
request from 45.6k to 31.2k instructions (c05e6cf); tuple memory keys took the cache
stage from 96.5k to 70.7k instructions per hit (b0e5746). Oracles: tests/test_cache.py
(every form, and tuple keys partition requests as digests do, hypothesis).
"""

from __future__ import annotations

import hashlib
import json
from operator import itemgetter
from typing import TYPE_CHECKING

from pydantic_core import to_json

from .._request import ChatRequest, EmbeddingsRequest
from ..responses.request_model import ResponsesRequest

if TYPE_CHECKING:
    from ..routing.model import Route

__all__ = [
    "CacheKey",
    "cache_key",
    "key_digest",
    "key_head",
    "memory_key",
    "responses_digest",
    "route_identity",
    "scope_line",
]

#: A key: a digest's text (every backend), or the tuple `memory_key` gives (memory only).
CacheKey = str | tuple[object, ...]

_NOT_IN_KEY = {
    "stream", "stream_options", "user", "metadata", "store", "service_tier", "prompt_cache_key",
}  # fmt: skip
_NOT_IN_KEY_N = _NOT_IN_KEY | {"n"}
#: A Responses request's parameters that do not change its answer (its conversation is in
#: `input` by the time it is keyed: `previous_response_id` is resolved before routing).
_RESPONSES_NOT_IN_KEY = _NOT_IN_KEY | {"safety_identifier", "previous_response_id", "background"}


def route_identity(route: Route, allowed: list[str] | None) -> str:
    """The route's name and the sorted targets a request on it may reach."""
    keys = {t.key: t.provider.name for r in route.chain() for t in r.targets}
    if allowed is not None:
        wanted = set(allowed)
        keys = {k: p for k, p in keys.items() if k in wanted or p in wanted}
    return f"{route.name or ''}|{','.join(sorted(keys))}"


_FREE, _FIXED, _PLAIN = "free", "fixed", "plain"


def _form(request: ChatRequest | EmbeddingsRequest) -> str:
    """How to encode the request: ``free`` when it holds mappings whose key order the
    caller chose; else ``plain`` when every parameter is a plain value (text messages
    without tool calls), else ``fixed``."""
    if request.__pydantic_extra__:
        return _FREE
    if isinstance(request, EmbeddingsRequest):
        return _PLAIN
    if (
        request.tools
        or request.response_format
        or request.logit_bias
        or isinstance(request.tool_choice, dict)
    ):
        return _FREE
    form = _PLAIN
    for message in request.messages:
        # content parts may carry mappings of their own (a file, a provider's extras)
        content = message.content
        if message.__pydantic_extra__ or (content is not None and type(content) is not str):
            return _FREE
        if message.__dict__.get("tool_calls"):  # not getattr: a miss raises inside pydantic
            form = _FIXED  # tool calls are models: serialised by the request's schema
    return form


def canonical_request(request: ChatRequest | EmbeddingsRequest) -> bytes:
    """The request's parameters that decide the answer, as canonical JSON."""
    exclude = _NOT_IN_KEY_N if request.__dict__.get("n") == 1 else _NOT_IN_KEY
    form = _form(request)
    if form == _FREE:
        data = request.model_dump(mode="json", exclude_none=True, exclude=exclude)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if form == _FIXED:
        return request.__pydantic_serializer__.to_json(request, exclude_none=True, exclude=exclude)
    # The parameters the caller set, by name, and each message's fields (all plain text):
    # half the work of serialising the whole request with its thirty-odd fields checked
    values = request.__dict__
    given = {
        name: values[name]
        for name in sorted(request.model_fields_set)
        if name not in exclude and values[name] is not None
    }
    if "messages" in given:
        given["messages"] = [message.__dict__ for message in given["messages"]]
    return _PLAIN_FORM + to_json(given)


#: Starts the plain form: never the same bytes as the other forms' JSON.
_PLAIN_FORM = b"\x01"


def key_head(operation: str, route: str, namespace: str) -> bytes:
    """What a key's digest covers before the request: operation, route identity, namespace."""
    return f"{operation}\n{route}\n{namespace}\n".encode()


def scope_line(scope: str, key: str | None, team: str | None, user: str | None) -> bytes:
    """What a key's head holds for its scope (see `CacheConfig.scope`): empty when the
    request's entries are shared (``global``, or nobody to scope by), so the heads and keys
    of unscoped requests are those of an unscoped cache.

    ``team`` falls back to the key for a key without a team; ``user`` is the user within
    its key. The unit separator keeps the parts apart (gateway key names, and users from
    headers, cannot hold control characters)."""
    if scope == "global":
        return b""
    if scope == "team" and team is not None:
        return f"team\x1f{team}\n".encode()
    if scope == "user" and user is not None:
        return f"user\x1f{key or ''}\x1f{user}\n".encode()
    if key is not None:
        return f"key\x1f{key}\n".encode()
    return b""


def key_digest(head: bytes, request: ChatRequest | EmbeddingsRequest) -> str:
    """The hex digest naming a request's cached answer, after `key_head`."""
    digest = hashlib.blake2b(head, digest_size=20)
    digest.update(canonical_request(request))
    return digest.hexdigest()


#: The values of a chat request's parameters that are in its key, by name (messages and `n`
#: apart: `n: 1` is the same as no `n`).
_KEPT_VALUES = itemgetter(
    *(name for name in ChatRequest.model_fields if name not in _NOT_IN_KEY_N | {"messages"})
)


def memory_key(head: bytes, request: ChatRequest | EmbeddingsRequest) -> tuple[object, ...] | None:
    """The memory backend's key for a chat request of text messages and plain parameters:
    `head`, each message's class and field values, the values of the other parameters in
    the key (None for those not set) and `n`. None for any other request: it is keyed by its
    digest.

    `head` holds what `key_head` covers. Only hashable values can be in a tuple key, so
    a list `stop` is keyed by its digest too."""
    if type(request) is not ChatRequest or request.__pydantic_extra__:
        return None
    values = request.__dict__
    if (
        values["tools"] is not None
        or values["response_format"] is not None
        or values["logit_bias"] is not None
        or type(values["tool_choice"]) is dict
        or type(values["stop"]) is list
    ):
        return None
    messages = []
    for message in values["messages"]:
        fields = message.__dict__
        # every other message field is text or None; `tool_calls` is a list even when empty
        if (
            message.__pydantic_extra__
            or type(fields["content"]) is not str
            or fields.get("tool_calls") is not None
        ):
            return None
        messages.append((type(message), *fields.values()))
    n = values["n"]
    return (head, tuple(messages), _KEPT_VALUES(values), None if n == 1 else n)


def responses_digest(head: bytes, request: ResponsesRequest) -> str:
    """The hex digest naming a Responses request's cached answer, after `key_head`: its
    parameters (but those that do not change the answer) as JSON with sorted keys."""
    data = request.model_dump(mode="json", exclude_none=True, exclude=_RESPONSES_NOT_IN_KEY)
    digest = hashlib.blake2b(head, digest_size=20)
    digest.update(
        json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    return digest.hexdigest()


def cache_key(
    operation: str, route: str, namespace: str, request: ChatRequest | EmbeddingsRequest
) -> str:
    """The hex digest naming a request's cached answer (see the module docstring)."""
    return key_digest(key_head(operation, route, namespace), request)
