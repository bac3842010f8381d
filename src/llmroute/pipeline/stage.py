"""The pipeline's stages: what runs before a request is routed and after it ends.

A `Stage` sees every request twice. `before()` runs in order before any
provider is called: it may refuse the request (raise, e.g.
`LocalRateLimitExceeded`), or answer it (return an `Answer`, e.g. from a
cache), in which case no provider is called and the later stages' `before()`
is skipped. `after()` runs for every stage, in order, once the request has
ended: with the response, or for a stream once it has finished (with its
chunks when a stage asked for them with `ctx.keep_chunks`), or with the error
that ended it, including a refusal by an earlier stage. Rate limits, budgets,
the cache and the recorder are stages; the router itself only wires them.

`after()` runs on the request's path: a stage that does slow work (network,
disk) hands it to a background task and returns.

A stage that only reads how requests end (the recorder writing to its store
alone) says so with `watches()`: a request answered in one piece that finds
every stage idle or watching is then given to `ended()` as an `Ended`, and
takes the executor's path without a `RequestContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .._types import ChatCompletion, ChatCompletionChunk, CreateEmbeddingResponse, RouteInfo
from ..responses.types import Response, ResponseStreamEvent

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .._request import ChatRequest, EmbeddingsRequest, RequestOptions
    from .._wire_completion import WireCompletion
    from ..responses.request_model import ResponsesRequest
    from ..routing.model import Route

__all__ = ["Answer", "Ended", "Outcome", "RequestContext", "Stage"]

#: What `Stage.before()` may answer a request with: a completion (non-streamed
#: chat), the chunks to replay (streamed chat), an embeddings response, a `Response`
#: (non-streamed Responses request) or the events to replay (streamed Responses).
Answer = (
    ChatCompletion
    | list[ChatCompletionChunk]
    | CreateEmbeddingResponse
    | Response
    | list[ResponseStreamEvent]
)


@dataclass(slots=True, eq=False)
class RequestContext:
    """One request on its way through the stages.

    Attributes:
        operation: ``chat``, ``embeddings`` or ``responses``.
        request: the validated request; for a Responses request, its chat
            equivalent (what limits, budgets and selection read: input, output
            cap, user), with the request itself in `source`. With an
            experiment on the route, the request as its variant sends it.
        options: the caller's `RequestOptions`.
        route: the resolved route (with an experiment, the route that serves
            the request's variant).
        info: the routing metadata, filled in as the request progresses.
        stream: whether the caller asked for a stream.
        started: when the request began, on llmroute's (event loop) clock.
        started_at: when the request began, as a Unix timestamp.
        keep_chunks: set by a stage's `before()` to receive a finished
            stream's chunks in `Outcome.chunks`.
        state: scratch space for stages, keyed by the stage's own name.
        source: the operation's own request when `request` is its chat
            equivalent (a `ResponsesRequest`); None otherwise.
        assigning: what gives the request its variant when an adaptive
            experiment must read its store first (awaited before any stage).
    """

    operation: Literal["chat", "embeddings", "responses"]
    request: ChatRequest | EmbeddingsRequest
    options: RequestOptions
    route: Route
    info: RouteInfo
    stream: bool
    started: float
    started_at: float
    keep_chunks: bool = False
    state: dict[str, object] = field(default_factory=dict)
    source: ResponsesRequest | None = None
    assigning: Coroutine[None, None, None] | None = None


@dataclass(slots=True, eq=False)
class Outcome:
    """How a request ended.

    Attributes:
        response: the completion, embeddings response or `Response` (non-streamed
            requests).
        chunks: a stream's chunks as received, including a usage chunk the
            caller did not ask to see, or a Responses stream's events (only when
            `keep_chunks` was set).
        completed: for a stream, whether the provider finished it (False when
            cut, failed or closed early); True for any other success.
        error: what ended the request, if it failed or was refused.
        answered_by: the name of the stage whose `before()` answered, if any.
    """

    response: ChatCompletion | CreateEmbeddingResponse | Response | None = None
    chunks: list[ChatCompletionChunk] | list[ResponseStreamEvent] | None = None
    completed: bool = False
    error: BaseException | None = None
    answered_by: str | None = None


@dataclass(slots=True, eq=False)
class Ended:
    """A request answered in one piece, as a stage that only watches sees it end
    (`Stage.watches`, `Stage.ended`).

    Attributes:
        operation: ``chat``, ``embeddings`` or ``responses``.
        model: the ``model=`` the caller asked for (a route or ``provider/model``).
        options: the caller's `RequestOptions`.
        route: the resolved route.
        info: the routing metadata, as the caller's answer carries it.
        started: when the request began, on llmroute's (event loop) clock.
        started_at: when the request began, as a Unix timestamp.
        ended: when it ended, on the same clock as `started`.
        result: the answer as the router returned it (None if it failed): a
            completion, embeddings response or `Response`, or for the gateway an
            OpenAI-format provider's plain completion kept as its JSON (`response`
            gives it typed).
        error: what ended the request, if it failed (a cancellation included).
    """

    operation: Literal["chat", "embeddings", "responses"]
    model: str
    options: RequestOptions
    route: Route
    info: RouteInfo
    started: float
    started_at: float
    ended: float
    result: ChatCompletion | CreateEmbeddingResponse | Response | WireCompletion | None
    error: BaseException | None

    @property
    def response(self) -> ChatCompletion | CreateEmbeddingResponse | Response | None:
        """The answer, typed (a completion kept as its JSON is validated on each read)."""
        result = self.result
        if result is None or isinstance(
            result, ChatCompletion | CreateEmbeddingResponse | Response
        ):
            return result
        return result.typed()


class Stage:
    """A pipeline stage. Subclasses override what they need; both hooks default to doing nothing."""

    #: The stage's name, used for `RequestContext.state` and `Outcome.answered_by`.
    name: str = "stage"

    def idle(self) -> bool:
        """Whether the stage would do nothing for any request now: its `before()` changes
        nothing and its `after()` returns at once. While every stage is idle, a request
        passes them by without the calls. Asked as a request starts: a request answered
        in one piece that started while every stage was idle calls no `after()`, whether
        it succeeds or fails, even if a stage turns busy meanwhile; a stream asks again as
        it ends (a stage that turned busy gets its `after()` without its `before()`). The
        default: never idle."""
        return False

    def watches(self, options: RequestOptions, state: dict[str, object]) -> bool:
        """Whether, busy now, the stage would only read how a request with these `options`
        ends: its `before()` would change nothing (no refusal, answer, state or
        ``keep_chunks``) and its `after()` would read nothing an `Ended` lacks (the
        request's messages and parameters, `RequestContext.state`). A request answered in
        one piece that starts while every stage is idle or watches it then calls neither
        hook: each watching stage's `ended()` is given its end instead, success or failure
        (no experiment runs on the router; a stream always gets `before()` and
        `after()`). Asked as the request starts, of stages that are not idle, last to
        first. `state` becomes the request's `RequestContext.state` should it need a
        context after all: a stage may leave there, under its name, what it worked out
        in asking (the recorder, its sampling decision), for its `before()`. The default:
        never."""
        return False

    def ended(self, end: Ended) -> None:
        """Read a request's end (for a stage that `watches()` it). Runs on the request's
        path, on the event loop, and must not block: hand slow work to a background task.
        One that raises is logged and counted, as `after()` is."""
        return None

    async def before(self, ctx: RequestContext) -> Answer | None:
        """Run before routing: raise to refuse, return an `Answer` to answer, None to go on."""
        return None

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        """Run once the request has ended, whatever the outcome."""
        return None

    async def check(self) -> str | None:
        """A problem that keeps this stage from working (a store it cannot reach), or None.

        `AsyncRouter.check` asks every stage; keep it quick (the gateway's
        ``/ready`` gives up after a couple of seconds).
        """
        return None

    async def aclose(self) -> None:
        """Release what the stage holds (flush, close connections); called by the router's close."""
        return None
