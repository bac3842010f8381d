"""Running the pipeline's stages around a request (the `Stage` contract is in `stage`).

The executor runs `before()` when a request starts; whoever ends the
request runs `after()`: the executor for an answer given in one piece, the
stream's session for a stream. Both go through the one `StageRunner`, so a
failing stage is counted and logged alike wherever the request ended.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from .stage import Answer, Ended, Outcome, RequestContext, Stage

if TYPE_CHECKING:
    from .._request import RequestOptions

__all__ = ["Plan", "StageRunner"]

#: What a request needs of the stages, asked as it starts (`StageRunner.watching`): the
#: stages that only watch it (none while every stage is idle) and None; or None and, since
#: it needs a context, the state the stages asked left for it (`Stage.watches`), which
#: becomes its `RequestContext.state` (None: they left nothing).
Plan = tuple["Sequence[Stage] | None", "dict[str, object] | None"]

#: The plan of a request while every stage is idle.
_IDLE: Plan = ((), None)

_log = logging.getLogger("llmroute")


class StageRunner:
    """Runs the stages, in order, before and after each request."""

    __slots__ = ("failures", "stages")

    def __init__(self, stages: list[Stage]) -> None:
        #: The stages, in order (the router's own list: it may add to it).
        self.stages = stages
        #: How many times a stage's after() or ended() raised (logged with its traceback).
        self.failures = 0

    def idle(self) -> bool:
        """Whether every stage is idle now (`Stage.idle`): a request then skips them.
        Asked last to first: the recorder, first, costs most to ask (its telemetry looks at
        the clock), and a cache, limits or a user's stage after it answer at once."""
        for stage in reversed(self.stages):  # noqa: SIM110 - all() of a generator: a frame more
            if not stage.idle():
                return False
        return True

    def watching(self, options: RequestOptions) -> Plan:
        """The `Plan` of a request with these `options`: the stages that only watch it
        (`Stage.watches`), in order, when no stage is busy with it. Asked as `idle` asks,
        last to first; a stage busy with it ends the asking, so the stages before it are not
        asked (what they left meanwhile stays in the plan's state)."""
        watching: list[Stage] | None = None  # none made while every stage is idle
        state: dict[str, object] | None = None
        for stage in reversed(self.stages):
            if stage.idle():
                continue
            if state is None:
                state = {}
            if not stage.watches(options, state):
                return None, state
            if watching is None:
                watching = [stage]
            else:
                watching.insert(0, stage)
        return _IDLE if watching is None else (watching, None)

    def ended(self, watching: Sequence[Stage], end: Ended) -> None:
        """Each watching stage's `ended()`; one that raises is logged and counted, not
        raised (as `after`)."""
        for stage in watching:
            try:
                stage.ended(end)
            except Exception:
                self.failures += 1
                _log.exception(
                    "llmroute: stage %r failed after request %s", stage.name, end.info.request_id
                )

    async def before(self, ctx: RequestContext) -> tuple[Answer | None, str | None]:
        """Each stage's `before()` until one answers: its answer and name, or two Nones."""
        for stage in self.stages:
            answer = await stage.before(ctx)
            if answer is not None:
                return answer, stage.name
        return None, None

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        """Every stage's `after()`; one that raises is logged and counted, not raised."""
        # Every stage sees every outcome: one stage's failure must not cost the others
        # their accounting (limits, budgets), nor the caller an answer it already has.
        for stage in self.stages:
            try:
                await stage.after(ctx, outcome)
            except Exception:
                self.failures += 1
                _log.exception(
                    "llmroute: stage %r failed after request %s", stage.name, ctx.info.request_id
                )

    async def after_failure(self, ctx: RequestContext, error: BaseException) -> None:
        """Every stage's `after()` with the error that ended the request."""
        # shielded: a cancelled request (a client that went away) is still accounted for
        with anyio.CancelScope(shield=True):
            await self.after(ctx, Outcome(error=error))
