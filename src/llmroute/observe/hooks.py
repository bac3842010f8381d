"""The recorder's hooks: the functions that follow requests as they start and end.

A hook is called with a `RequestRecord` (``request_start``, ``request_end``) or
a record and one of its `AttemptRecord`s (``attempt_end``). It may be a
coroutine function. One that raises is logged and counted, never raised into
a request or the recorder's writing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .record import AttemptRecord, RequestRecord

__all__ = ["HookEvent", "Hooks"]

logger = logging.getLogger("llmroute.observe")

#: The events a hook can follow.
HookEvent = Literal["request_start", "attempt_end", "request_end"]


class Hooks:
    """The hooks of one recorder, by event, and how many times one raised (`errors`)."""

    __slots__ = ("_by_event", "errors")

    def __init__(self) -> None:
        self._by_event: dict[HookEvent, list[Callable[..., object]]] = {
            "request_start": [], "attempt_end": [], "request_end": [],
        }  # fmt: skip
        self.errors = 0

    def add(self, event: HookEvent, hook: Callable[..., object]) -> None:
        """Call `hook` on `event` from now on."""
        if event not in self._by_event:
            raise ValueError(
                f"unknown hook event {event!r}: expected one of {list(self._by_event)}"
            )
        self._by_event[event].append(hook)

    def follow(self, event: HookEvent) -> bool:
        """Whether any hook follows `event`."""
        return bool(self._by_event[event])

    def follow_ends(self) -> bool:
        """Whether any hook follows a request's or an attempt's end."""
        return bool(self._by_event["attempt_end"] or self._by_event["request_end"])

    async def call(
        self, event: HookEvent, record: RequestRecord, attempt: AttemptRecord | None = None
    ) -> None:
        """Call the hooks of `event`, awaiting those that return an awaitable."""
        args: tuple[Any, ...] = (record,) if attempt is None else (record, attempt)
        for hook in self._by_event[event]:
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.errors += 1
                logger.exception("llmroute recorder: %s hook %r failed", event, hook)

    async def deliver(self, records: Sequence[RequestRecord]) -> None:
        """The end hooks of finished `records`: each attempt's, then the request's."""
        for record in records:
            for attempt in record.attempts:
                await self.call("attempt_end", record, attempt)
            await self.call("request_end", record)

    def deliver_sync(self, records: Sequence[RequestRecord]) -> None:
        """`deliver`, with synchronous hooks only (when the event loop is going away: a
        coroutine a hook returns is closed unrun)."""
        for record in records:
            for attempt in record.attempts:
                self._call_sync("attempt_end", record, attempt)
            self._call_sync("request_end", record)

    def _call_sync(self, event: HookEvent, *args: Any) -> None:
        for hook in self._by_event[event]:
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            except Exception:
                self.errors += 1
                logger.exception("llmroute recorder: %s hook %r failed", event, hook)
