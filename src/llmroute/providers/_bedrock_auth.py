"""Signing Bedrock requests with SigV4 through botocore (imported only when a Bedrock provider is built)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from .._errors import AuthenticationError, ConfigError
from .._transports import HttpRequest
from .configs import BedrockProviderConfig

__all__ = ["SigV4Signer", "require_botocore", "resolve_region"]

_INSTALL = "install it with: pip install 'llmroute[bedrock]'"


def require_botocore(name: str) -> None:
    """Raise a `ConfigError` naming the extra when botocore is missing."""
    try:
        import botocore  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"provider {name!r} (bedrock) needs botocore: {_INSTALL}", path=f"providers.{name}"
        ) from exc


def resolve_region(name: str, config: BedrockProviderConfig) -> str:
    """The configured region, else the profile's (shared config files), else a `ConfigError`."""
    if config.region:
        return config.region
    import botocore.session

    region = botocore.session.Session(profile=config.profile).get_config_variable("region")
    if not region:
        raise ConfigError(
            f"no AWS region for provider {name!r}: set `region`, AWS_REGION or AWS_DEFAULT_REGION",
            path=f"providers.{name}.region",
        )
    return str(region)


class SigV4Signer:
    """Signs requests for one region with the configured keys or the standard credential chain.

    The chain (environment, shared files, SSO, container and instance roles) is
    resolved once, in a worker thread because it may read files or call a
    metadata service; refreshable credentials are refreshed in a worker thread
    too, only when botocore says they need it.
    """

    def __init__(self, name: str, config: BedrockProviderConfig, region: str) -> None:
        import botocore.credentials
        import botocore.session

        self._name = name
        self._region = region
        self._credentials: Any = None
        self._session: Any = None
        if config.aws_access_key_id is not None and config.aws_secret_access_key is not None:
            token = config.aws_session_token
            self._credentials = botocore.credentials.Credentials(
                config.aws_access_key_id.get_secret_value(),
                config.aws_secret_access_key.get_secret_value(),
                token.get_secret_value() if token is not None else None,
            )
        else:
            self._session = botocore.session.Session(profile=config.profile)

    async def _frozen(self) -> Any:
        credentials = self._credentials
        if credentials is None:
            credentials = await anyio.to_thread.run_sync(self._session.get_credentials)
            if credentials is None:
                raise AuthenticationError(
                    "no AWS credentials found (static keys, environment, shared files, SSO or "
                    "an instance role); configure them or a Bedrock `api_key`",
                    provider=self._name,
                )
            self._credentials = credentials
        refresh_needed = getattr(credentials, "refresh_needed", None)
        if callable(refresh_needed) and refresh_needed():
            return await anyio.to_thread.run_sync(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    async def sign(self, request: HttpRequest) -> HttpRequest:
        """`request` with the SigV4 ``Authorization``, ``X-Amz-Date`` (and token) headers."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = await self._frozen()
        aws = AWSRequest(
            method=request.method, url=request.url, data=request.body, headers=request.headers
        )
        SigV4Auth(credentials, "bedrock", self._region).add_auth(aws)
        headers = {key.lower(): value for key, value in aws.headers.items()}
        return HttpRequest(request.method, request.url, headers, request.body)
