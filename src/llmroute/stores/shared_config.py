"""The top-level `state` section: provider state shared by every router on one Redis.

::

    state: redis://localhost:6379/0        # or a mapping:
    state:
      backend: redis://localhost:6379/0    # or `rate_limits`: the same Redis as the limits
      poll_interval: 5s
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._units import PositiveDuration
from ..cache.config import check_backend_url

__all__ = ["SHARED_BACKENDS", "SharedStateConfig"]

#: Sections whose Redis the `state` section may name instead of a URL.
SHARED_BACKENDS = ("rate_limits", "budgets", "cache")


class SharedStateConfig(BaseModel):
    """Circuit state, Retry-After and rate-limit cooldowns and half-open probes, shared
    through Redis by every router that names it (docs/reliability.md#shared-state).

    Attributes:
        backend: a Redis URL (``redis://host:6379/0``, ``rediss://...``,
            ``unix:///path``), or ``rate_limits``, ``budgets`` or ``cache``: the
            Redis that section uses.
        timeout: the Redis socket timeout (connecting, and each command).
        retry_interval: after a Redis failure, how long the router decides on its
            own state alone before it tries Redis again.
        poll_interval: how often every target's shared state is read again,
            besides the changes Redis pushes at once (it catches what a lost
            message missed).
        prefix: the first part of every key and of the channel.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    backend: str
    timeout: PositiveDuration = 0.25
    retry_interval: PositiveDuration = 1.0
    poll_interval: PositiveDuration = 5.0
    prefix: str = Field(default="llmroute:state", min_length=1, pattern=r"^[^{}]+$")

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, data: Any) -> Any:
        return {"backend": data} if isinstance(data, str) else data

    @field_validator("backend")
    @classmethod
    def _redis_backend(cls, value: str) -> str:
        if value in SHARED_BACKENDS:
            return value
        if value.startswith("memory://"):
            raise ValueError(
                "shared state needs Redis ('redis://host:6379/0'); one process shares its "
                "state with itself already"
            )
        return check_backend_url(value)
