"""boto3 clients pointed at AWS or at any DynamoDB endpoint (DynamoDB Local), and what
botocore's credential and connection errors mean for the user (``translate_aws_error``)."""

from __future__ import annotations

import os
import re
from typing import Any

import boto3
from botocore import exceptions as bx
from botocore.config import Config

from cutover.errors import ConfigError, CutoverError, ServiceError
from cutover.settings import Settings

# Connecting to DynamoDB takes milliseconds; without a limit botocore waits 60 s per attempt.
CONNECT_TIMEOUT_S = 10
MAX_ATTEMPTS = 10


def _config(attempts: int | None = None) -> Config:
    # AWS_MAX_ATTEMPTS, boto's own setting, overrides the default (a Config value would win).
    attempts = attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or MAX_ATTEMPTS)
    return Config(
        retries={"max_attempts": attempts, "mode": "adaptive"},
        max_pool_connections=32,
        connect_timeout=CONNECT_TIMEOUT_S,
    )


def dynamodb_client(settings: Settings, attempts: int | None = None) -> Any:
    """A DynamoDB client with the settings' credentials (an Airflow connection's key) or else
    boto3's own; against a custom endpoint without either, dummy ones are used (DynamoDB Local
    accepts any). ``attempts`` bounds retries (a request path wants few)."""
    kwargs: dict[str, Any] = {"region_name": settings.region, "config": _config(attempts)}
    creds = settings.aws_credentials
    if creds is not None:
        kwargs["aws_access_key_id"] = creds.access_key_id
        kwargs["aws_secret_access_key"] = creds.secret_access_key
        kwargs["aws_session_token"] = creds.session_token
    if settings.dynamodb_endpoint:
        kwargs["endpoint_url"] = settings.dynamodb_endpoint
        if creds is None and boto3.Session().get_credentials() is None:
            kwargs["aws_access_key_id"] = "local"
            kwargs["aws_secret_access_key"] = "local"
    return boto3.client("dynamodb", **kwargs)


_HOW_TO_AUTHENTICATE = (
    "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance "
    "or task role applies), or set CUTOVER_DYNAMODB_ENDPOINT to use a local DynamoDB"
)
# ClientError codes that mean the caller's identity or its permissions are wrong.
_AUTH_CODES = {
    "UnrecognizedClientException": "AWS does not recognize the access key",
    "InvalidSignatureException": "AWS rejected the request signature (wrong secret key?)",
    "ExpiredTokenException": "the AWS session token has expired",
    "AccessDeniedException": "AWS denied access",
}


def _endpoint(exc: BaseException) -> str:
    kwargs = getattr(exc, "kwargs", {}) or {}
    url = kwargs.get("endpoint_url") or os.environ.get("CUTOVER_DYNAMODB_ENDPOINT") or "AWS"
    return str(url).rstrip("/")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def translate_aws_error(exc: BaseException) -> CutoverError | None:
    """``exc`` as a one-line ``ConfigError`` (credentials, region, profile: exit 2, not
    retried) or ``ServiceError`` (endpoint unreachable: exit 4, retried), or None when it is
    not one of those. Messages never include secret values."""
    if isinstance(exc, bx.NoCredentialsError):
        return ConfigError(f"no AWS credentials found for DynamoDB; {_HOW_TO_AUTHENTICATE}")
    if isinstance(exc, bx.PartialCredentialsError):
        kw = exc.kwargs
        return ConfigError(
            f"incomplete AWS credentials in {kw.get('provider', '?')}: "
            f"{kw.get('cred_var', '?')} is missing; {_HOW_TO_AUTHENTICATE}"
        )
    if isinstance(exc, bx.NoRegionError):
        return ConfigError("no AWS region is set; set AWS_DEFAULT_REGION, e.g. us-east-1")
    if isinstance(exc, bx.ProfileNotFound):
        return ConfigError(
            f"AWS profile {exc.kwargs.get('profile')!r} is not in the AWS config or credentials "
            "file; fix or unset AWS_PROFILE"
        )
    if isinstance(
        exc,
        (
            bx.CredentialRetrievalError,
            bx.TokenRetrievalError,
            bx.SSOError,
            bx.ConfigParseError,
            bx.InvalidConfigError,
        ),
    ):
        return ConfigError(f"AWS credentials cannot be loaded: {_one_line(exc)}")
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _AUTH_CODES:
            message = _one_line(error.get("Message") or "")
            detail = f" ({message})" if message else ""
            action = (
                "grant the identity access to the cutover DynamoDB tables or use another profile"
                if code == "AccessDeniedException"
                else _HOW_TO_AUTHENTICATE
            )
            return ConfigError(f"{_AUTH_CODES[code]}{detail}; {action}")
        return None
    if isinstance(exc, _UNREACHABLE):
        endpoint = _endpoint(exc)
        action = (
            "check the network (and any HTTPS_PROXY) to AWS and AWS_DEFAULT_REGION, or set "
            "CUTOVER_DYNAMODB_ENDPOINT to use a local DynamoDB"
            if endpoint == "AWS" or ".amazonaws.com" in endpoint
            else "start the local one with `cutover up`, or fix CUTOVER_DYNAMODB_ENDPOINT "
            "(empty means AWS)"
        )
        return ServiceError(
            f"cannot reach DynamoDB at {endpoint} ({_why_unreachable(exc)}); {action}"
        )
    return None


# EndpointConnectionError, ConnectTimeoutError, SSLError and ProxyConnectionError derive from
# ConnectionError; ReadTimeoutError and ConnectionClosedError from HTTPClientError.
_UNREACHABLE = (bx.ConnectionError, bx.HTTPClientError)


def _why_unreachable(exc: BaseException) -> str:
    if isinstance(exc, bx.ConnectTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT_S}s"
    if isinstance(exc, bx.ReadTimeoutError):
        return "no answer in time"
    if isinstance(exc, bx.ConnectionClosedError):
        return "the connection closed before an answer"
    if isinstance(exc, bx.ProxyConnectionError):
        return f"cannot connect to the proxy {exc.kwargs.get('proxy_url')}"
    cause = str((getattr(exc, "kwargs", {}) or {}).get("error", ""))
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", cause)
    if match:
        return match.group(1).strip().rstrip(".")
    if isinstance(exc, bx.SSLError):
        return "SSL validation failed"
    return "connection failed"
