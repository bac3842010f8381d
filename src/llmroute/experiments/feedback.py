"""Feedback: checked as it is given, stored once what it is about is recorded.

`AsyncRouter.feedback` (per request) and `AsyncRouter.sticky_feedback` (per
experiment and sticky key) build a `Feedback` here and hand it to
`store_feedback`, which writes it to the router's log store.

Records are written by the recorder in the background, in batches, at most
``logging.flush_interval`` after a request ends. Feedback given right after
an answer may name a request whose record is not stored yet, so a request
the store does not know is not called unknown at once: the recorder is
flushed first (this process's records), then the store is asked again for
twice the flush interval (the records of other processes sharing the store:
the gateway's other workers).
"""

from __future__ import annotations

import asyncio
import math
import numbers
import re
from os import urandom
from typing import TYPE_CHECKING

from .._errors import ConfigError, RequestError, UnknownRequest
from ..observe.feedback import Feedback, FeedbackKind
from .keys import sticky_digest

if TYPE_CHECKING:
    from .._config import LoggingConfig
    from ..observe.recorder import Recorder

__all__ = [
    "MAX_COMMENT",
    "MAX_STICKY_KEY",
    "request_feedback",
    "sticky_key_feedback",
    "store_feedback",
]

#: A metric's or an experiment's name: a letter or digit, then letters, digits, ``_ . : -``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
#: A request id as llmroute makes them (``lr-`` and hex digits), or an id of that alphabet.
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: The longest comment kept, in characters.
MAX_COMMENT = 2_000
#: The longest sticky key accepted, in characters (only its digest is stored).
MAX_STICKY_KEY = 512


def _name(value: object, param: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise RequestError(
            f"{param}: expected 1 to 64 letters, digits, '_', '.', ':' or '-' (starting with a "
            f"letter or digit), got {value!r:.80}",
            param=param,
        )
    return value


#: The largest magnitude of a numeric feedback value: a score, a rating, a duration or an
#: amount, not an overflow. (Squares of larger values overflow the statistics.)
MAX_VALUE = 1e12


def _value(value: object) -> tuple[float, FeedbackKind]:
    """A feedback value as stored: a boolean as 1.0 or 0.0, a number as a finite float of
    magnitude at most `MAX_VALUE`."""
    if isinstance(value, bool):
        return float(value), "boolean"
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if math.isfinite(number) and abs(number) <= MAX_VALUE:
            return number, "number"
    raise RequestError(
        f"value: expected true, false or a number between -{MAX_VALUE:g} and {MAX_VALUE:g}, "
        f"got {value!r:.80}",
        param="value",
    )


def _comment(comment: object) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise RequestError(f"comment: expected a string, got {comment!r:.80}", param="comment")
    if len(comment) > MAX_COMMENT:
        raise RequestError(
            f"comment: at most {MAX_COMMENT} characters, got {len(comment)}", param="comment"
        )
    return comment


def _checked(
    name: object, value: object, comment: object, key: str | None, now: float, **about: str
) -> Feedback:
    """A new `Feedback` about `about` (its request, or its experiment and sticky key), with
    its metric, value and comment checked."""
    number, kind = _value(value)
    return Feedback(
        f"fb-{urandom(12).hex()}", _name(name, "name"), number, kind, now,
        comment=_comment(comment), key=key, **about,
    )  # fmt: skip


def request_feedback(
    request_id: object,
    name: object,
    value: object,
    *,
    comment: object = None,
    key: str | None = None,
    now: float,
) -> Feedback:
    """A checked `Feedback` on request `request_id` (`RequestError` on bad input)."""
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise RequestError(
            f"request_id: expected a request id such as 'lr-...', got {request_id!r:.80}",
            param="request_id",
        )
    return _checked(name, value, comment, key, now, request_id=request_id)


def sticky_key_feedback(
    experiment: object,
    sticky_key: object,
    name: object,
    value: object,
    *,
    comment: object = None,
    key: str | None = None,
    now: float,
) -> Feedback:
    """A checked `Feedback` on everything `sticky_key` (a user, a session...) did in
    `experiment`; the key is kept as its digest only."""
    experiment = _name(experiment, "experiment")
    if not isinstance(sticky_key, str) or not 0 < len(sticky_key) <= MAX_STICKY_KEY:
        raise RequestError(
            f"sticky_key: expected a string of 1 to {MAX_STICKY_KEY} characters",
            param="sticky_key",
        )
    digest = sticky_digest(experiment, sticky_key)
    return _checked(name, value, comment, key, now, experiment=experiment, sticky_key=digest)


async def store_feedback(
    recorder: Recorder,
    log_config: LoggingConfig | None,
    feedback: Feedback,
    *,
    scope: str | None = None,
) -> Feedback:
    """Store `feedback` in the recorder's log store once what it is about is recorded (made
    with gateway key `scope`, when given); `UnknownRequest` if it is not, after flushing
    and waiting for twice the flush interval; `ConfigError` without a store."""
    store = recorder.store
    if store is None or log_config is None:
        raise ConfigError(
            "feedback is stored in the request log, and this router has none: set "
            "`logging.store` (for example sqlite:///llmroute.db)",
            path="logging.store",
        )

    async def stored() -> bool:
        return await asyncio.to_thread(store.add_feedback, feedback, scope=scope)

    if await stored():
        return feedback
    await recorder.flush()
    loop = asyncio.get_running_loop()
    grace = 2 * log_config.flush_interval
    deadline = loop.time() + grace
    while not await stored():
        left = deadline - loop.time()
        if left <= 0:
            raise UnknownRequest(feedback.request_id, feedback.experiment)
        await asyncio.sleep(min(left, grace / 4))
    return feedback
