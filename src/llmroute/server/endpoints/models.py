"""``GET /v1/models`` and ``GET /v1/models/{id}``: the routes and targets the caller's key may use."""

from __future__ import annotations

from ..errors import HTTPError
from ..request import GatewayRequest
from ..responses import send_json

__all__ = ["list_models", "retrieve_model"]


async def list_models(request: GatewayRequest) -> None:
    """The models the caller may use, as OpenAI lists them."""
    identity = request.identity()
    listed = await request.gateway.router.models.list()
    listed.data = [m for m in listed.data if identity.allows(m.id)]
    await send_json(request, listed.model_dump_json().encode())


async def retrieve_model(request: GatewayRequest) -> None:
    """One model, named by the path; a 404 if unknown or not the caller's to use."""
    identity = request.identity()
    wanted = request.scope["path"].partition("/models/")[2]
    for model in await request.gateway.router.models.list():
        if model.id == wanted and identity.allows(model.id):
            await send_json(request, model.model_dump_json().encode())
            return
    raise HTTPError(404, f"unknown model {wanted!r}", code="model_not_found", param="model")
