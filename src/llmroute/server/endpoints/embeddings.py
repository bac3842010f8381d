"""``POST /v1/embeddings``: embeddings of one input or several."""

from __future__ import annotations

from ..._errors import UnknownModel
from ..._types import CreateEmbeddingResponse
from ..headers import control_options
from ..request import GatewayRequest
from ..responses import answer

__all__ = ["create_embeddings"]

_embeddings_json = CreateEmbeddingResponse.__pydantic_serializer__.to_json


async def create_embeddings(request: GatewayRequest) -> None:
    """Answer one embeddings request through the router."""
    identity = request.identity()
    body = await request.read_json()
    request.allowed(identity, body)
    routes = request.gateway.router.config.routes
    options = control_options(identity, request.controls, routes, request.model)
    model, inputs = body.pop("model", None), body.pop("input", None)
    try:
        result = await request.gateway.router.embeddings.create(
            model=model, input=inputs, extra_body=body, llmroute=options
        )
    except UnknownModel as exc:
        raise identity.visible(exc) from None
    await answer(request, "embeddings", _embeddings_json(result), result.llmroute)
