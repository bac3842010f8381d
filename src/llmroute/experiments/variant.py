"""A variant, compiled: the routes that serve it, and what it does to a request.

A variant changes a request's parameters (set over the caller's) and its
system prompt (replacing the caller's system and developer messages, or put
before them), for each operation in its own shape:

- a chat request: its `messages` and parameters;
- a Responses request: its `instructions` (and, to replace, the system and
  developer messages of its `input`), and the parameters the Responses API
  has under its own names (`RESPONSES_PARAMS`): a native target receives them
  as they are, a translated one through the chat translation;
- an embeddings request has no prompt or parameters to vary: a variant that
  changes either refuses it (its targets alone can be tried on embeddings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._errors import RequestError
from .._request import (
    ChatRequest,
    DeveloperMessage,
    EmbeddingsRequest,
    Message,
    RequestOptions,
    SystemMessage,
)
from ..responses.request_model import ResponsesRequest
from .config import template_fields

if TYPE_CHECKING:
    from ..routing.model import Route

__all__ = ["RESPONSES_PARAMS", "Template", "Variant"]

#: Chat parameters a variant may set on a Responses request, and their Responses names
#: (``reasoning_effort`` goes into ``reasoning.effort``). Any other refuses the request.
RESPONSES_PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "parallel_tool_calls": "parallel_tool_calls",
    "service_tier": "service_tier",
    "metadata": "metadata",
    "prompt_cache_key": "prompt_cache_key",
    "top_logprobs": "top_logprobs",
    "user": "user",
    "reasoning_effort": "reasoning",
}


class Template:
    """A prompt template of the `prompts` section, parsed once."""

    __slots__ = ("name", "parts", "variables")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.parts = template_fields(text)
        self.variables = tuple(dict.fromkeys(p[0] for p in self.parts if isinstance(p, tuple)))

    def fill(self, values: Mapping[str, str], variant: str) -> str:
        """The template with `values` in place of its variables (each value as it is).

        Raises:
            RequestError: a variable has no value.
        """
        missing = [name for name in self.variables if name not in values]
        if missing:
            listed = ", ".join(missing)
            raise RequestError(
                f"variant {variant!r} uses prompt {self.name!r}, which needs the variable(s) "
                f"{listed}: pass them as llmroute={{'prompt_variables': {{...}}}} or the "
                f"x-llmroute-prompt-<name> header(s)",
                param="llmroute.prompt_variables",
            )
        return "".join(p if isinstance(p, str) else values[p[0]] for p in self.parts)


@dataclass(frozen=True, slots=True, eq=False)
class Variant:
    """One variant of one experiment, ready to apply.

    Attributes:
        experiment: the experiment's name.
        name: the variant's name.
        weight: its configured weight.
        route: the route that serves it: the experiment's route for a variant
            that keeps the targets; else its own targets, then the experiment's
            route as a fallback.
        shadow_route: the route its shadow copies go to: its own targets only.
        targets: its own targets' keys (a request served by another is
            recorded off-variant).
        params: the parameters it sets (empty: none).
        system: its system prompt: text, a `Template`, or None (unchanged).
        system_mode: ``replace`` or ``prepend``.
    """

    experiment: str
    name: str
    weight: float
    route: Route
    shadow_route: Route
    targets: frozenset[str]
    params: Mapping[str, Any]
    system: str | Template | None = None
    system_mode: Literal["replace", "prepend"] = "replace"

    @property
    def changes_request(self) -> bool:
        """Whether the variant changes the request (not only where it goes)."""
        return bool(self.params) or self.system is not None

    def _system_text(self, options: RequestOptions) -> str | None:
        system = self.system
        if isinstance(system, Template):
            return system.fill(options.prompt_variables, self.name)
        return system

    def chat(self, request: ChatRequest, options: RequestOptions) -> ChatRequest:
        """`request` as this variant sends it."""
        update: dict[str, Any] = dict(self.params)
        text = self._system_text(options)
        if text is not None:
            update["messages"] = self._messages(request.messages, text)
        return request.model_copy(update=update) if update else request

    def _messages(self, messages: list[Message], text: str) -> list[Message]:
        system = SystemMessage(role="system", content=text)
        if self.system_mode == "prepend":
            return [system, *messages]
        kept = [m for m in messages if not isinstance(m, SystemMessage | DeveloperMessage)]
        return [system, *kept]

    def responses(self, request: ResponsesRequest, options: RequestOptions) -> ResponsesRequest:
        """A Responses request as this variant sends it.

        Raises:
            RequestError: the variant sets a parameter the Responses API has no
                counterpart of (see `RESPONSES_PARAMS`).
        """
        update: dict[str, Any] = {}
        for name, value in self.params.items():
            field = RESPONSES_PARAMS.get(name)
            if field is None:
                raise RequestError(
                    f"experiment {self.experiment!r}, variant {self.name!r} sets {name!r}, "
                    "which the Responses API has no parameter for (variants of Responses "
                    f"requests may set {', '.join(RESPONSES_PARAMS)})",
                    param=name,
                )
            if field == "reasoning":
                value = {**(request.reasoning or {}), "effort": value}
            update[field] = value
        text = self._system_text(options)
        if text is not None:
            if self.system_mode == "prepend":
                given = request.instructions
                update["instructions"] = text if not given else f"{text}\n\n{given}"
            else:
                update["instructions"] = text
                if isinstance(request.input, list):
                    update["input"] = [i for i in request.input if not _system_item(i)]
        return request.model_copy(update=update) if update else request

    def embeddings(self, request: EmbeddingsRequest) -> EmbeddingsRequest:
        """An embeddings request, which only the variant's targets apply to.

        Raises:
            RequestError: the variant changes parameters or the prompt.
        """
        if self.changes_request:
            raise RequestError(
                f"experiment {self.experiment!r}, variant {self.name!r} changes the prompt or "
                "parameters, which embeddings requests do not have: an experiment on an "
                "embeddings route may only change targets (`targets` or `route`)",
                param="model",
            )
        return request


def _system_item(item: dict[str, Any]) -> bool:
    """Whether a Responses input item is a system or developer message."""
    return item.get("type", "message") == "message" and item.get("role") in ("system", "developer")
