"""boto3 clients pointed at AWS or at any DynamoDB endpoint (DynamoDB Local)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from cutover.settings import Settings

_CONFIG = Config(retries={"max_attempts": 10, "mode": "adaptive"}, max_pool_connections=32)


def dynamodb_client(settings: Settings) -> Any:
    """A DynamoDB client; against a custom endpoint without credentials, dummy ones are used
    (DynamoDB Local accepts any)."""
    kwargs: dict[str, Any] = {"region_name": settings.region, "config": _CONFIG}
    if settings.dynamodb_endpoint:
        kwargs["endpoint_url"] = settings.dynamodb_endpoint
        if boto3.Session().get_credentials() is None:
            kwargs["aws_access_key_id"] = "local"
            kwargs["aws_secret_access_key"] = "local"
    return boto3.client("dynamodb", **kwargs)
