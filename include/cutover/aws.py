"""Where DynamoDB calls go and with which credentials, resolved once by botocore for both
DynamoDB clients (``resolve_dynamodb``: boto3's client and the loader's ``DynamoHttp``), and
what botocore's credential and connection errors mean for the user (``translate_aws_error``)."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore import exceptions as bx
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpsession import get_cert_path
from botocore.loaders import Loader

from cutover.errors import ConfigError, CutoverError, ServiceError
from cutover.settings import Settings

# Connecting to DynamoDB takes milliseconds; without a limit botocore waits 60 s per attempt.
CONNECT_TIMEOUT_S = 10
MAX_ATTEMPTS = 10
POOL_CONNECTIONS = 32
# What a custom endpoint without credentials is signed with (DynamoDB Local accepts any key).
LOCAL_KEY = "local"


def _config(attempts: int | None = None, connections: int | None = None) -> Config:
    # AWS_MAX_ATTEMPTS, boto's own setting, overrides the default (a Config value would win).
    attempts = attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or MAX_ATTEMPTS)
    return Config(
        retries={"max_attempts": attempts, "mode": "adaptive"},
        max_pool_connections=connections or POOL_CONNECTIONS,
        connect_timeout=CONNECT_TIMEOUT_S,
    )


@dataclass(frozen=True)
class DynamoDBTarget:
    """Where and how DynamoDB calls go, as botocore decides them: ``client`` (a botocore
    DynamoDB client), ``endpoint_url`` (the URL a call is posted to, the endpoint's path
    included), ``region`` and ``signing_name`` (what a call is signed for), ``credentials``
    (None when none are found and the endpoint is AWS itself) and ``ca_bundle``, the
    certificates botocore verifies TLS with (AWS_CA_BUNDLE, the profile's ``ca_bundle``, else
    certifi's or botocore's own)."""

    client: Any
    endpoint_url: str
    region: str
    signing_name: str
    credentials: Credentials | None
    ca_bundle: str


_loader: Loader | None = None
_loader_lock = threading.Lock()


def _session() -> botocore.session.Session:
    """A new botocore session (the environment and the AWS config files read now), sharing one
    loader of botocore's data files: loading DynamoDB's model again costs most of a client."""
    global _loader
    session = botocore.session.Session()
    with _loader_lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _loader)
    return session


def dynamodb_service_model() -> Any:
    """botocore's model of the DynamoDB API (operations, errors and their retry traits)."""
    return _session().get_service_model("dynamodb")


class _Sent(Exception):
    """Raised from botocore's ``before-sign`` event: the call is complete but not sent."""

    def __init__(self, url: str, region: str, signing_name: str) -> None:
        super().__init__(url)
        self.url, self.region, self.signing_name = url, region, signing_name


def _where_calls_go(client: Any) -> tuple[str, str, str]:
    """(URL, signing region, signing name) of a call as the client would post it, read from
    a ListTables stopped before it is signed: nothing is sent and no credentials are needed.
    botocore's endpoint rules decide them per call (an account's own endpoint, FIPS, dual
    stack, the partition's domain); ``client.meta.endpoint_url`` is only their starting
    point."""

    def stop(request: Any, signing_name: str, region_name: str, **_: Any) -> None:
        signing = request.context.get("signing") or {}
        raise _Sent(
            request.url,
            signing.get("region") or region_name,
            signing.get("signing_name") or signing_name,
        )

    event = f"before-sign.{client.meta.service_model.service_id.hyphenize()}.ListTables"
    client.meta.events.register_first(event, stop, unique_id="cutover-where-calls-go")
    try:
        client.list_tables(Limit=1)
    except _Sent as sent:
        return sent.url, sent.region, sent.signing_name
    finally:
        client.meta.events.unregister(event, unique_id="cutover-where-calls-go")
    raise RuntimeError("botocore sent ListTables without signing it")  # never: it signs all


def _configured_endpoint(session: botocore.session.Session, client: Any, region: str) -> bool:
    """Whether the client's endpoint comes from AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL or
    the AWS config file rather than from AWS's own endpoint rules."""
    aws = session.create_client(
        "dynamodb",
        region_name=region,
        config=Config(ignore_configured_endpoint_urls=True),
        aws_access_key_id=LOCAL_KEY,
        aws_secret_access_key=LOCAL_KEY,
    )
    return bool(client.meta.endpoint_url != aws.meta.endpoint_url)


def resolve_dynamodb(
    settings: Settings, attempts: int | None = None, connections: int | None = None
) -> DynamoDBTarget:
    """DynamoDB as botocore resolves it for ``settings``: CUTOVER_DYNAMODB_ENDPOINT, else
    AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL or the config file's endpoint, else AWS's
    endpoint for the region (AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT and the
    partition honoured); the settings' key (an Airflow connection's), else botocore's
    credential chain, else, against a custom endpoint, a dummy key. ``attempts`` bounds the
    client's retries (a request path wants few), ``connections`` its connection pool.

    botocore's errors (a profile that does not exist, a malformed config file) are raised as
    they are: ``translate_aws_error`` says what they mean."""
    session = _session()
    kwargs: dict[str, Any] = {
        "region_name": settings.region,
        "config": _config(attempts, connections),
    }
    if settings.dynamodb_endpoint:
        kwargs["endpoint_url"] = settings.dynamodb_endpoint
    credentials: Credentials | None
    given = settings.aws_credentials
    if given is not None:
        kwargs["aws_access_key_id"] = given.access_key_id
        kwargs["aws_secret_access_key"] = given.secret_access_key
        kwargs["aws_session_token"] = given.session_token
        credentials = Credentials(given.access_key_id, given.secret_access_key, given.session_token)
    else:
        credentials = session.get_credentials()  # the one the client would resolve
    local = {"aws_access_key_id": LOCAL_KEY, "aws_secret_access_key": LOCAL_KEY}
    if credentials is None and settings.dynamodb_endpoint:
        credentials = Credentials(LOCAL_KEY, LOCAL_KEY)
        kwargs.update(local)
    if credentials is not None:
        client = session.create_client("dynamodb", **kwargs)
    else:  # a local key only if the environment or the config file names a custom endpoint
        client = session.create_client("dynamodb", **kwargs, **local)
        if _configured_endpoint(session, client, settings.region):
            credentials = Credentials(LOCAL_KEY, LOCAL_KEY)
        else:  # botocore raises NoCredentialsError on the client's first call
            client = session.create_client("dynamodb", **kwargs)
    url, region, signing_name = _where_calls_go(client)
    ca_bundle = get_cert_path(session.get_config_variable("ca_bundle") or True)
    return DynamoDBTarget(client, url, region, signing_name, credentials, ca_bundle)


def dynamodb_client(
    settings: Settings, attempts: int | None = None, connections: int | None = None
) -> Any:
    """A botocore DynamoDB client for ``settings``, resolved by ``resolve_dynamodb`` (as the
    loader's ``DynamoHttp`` is): the settings' credentials (an Airflow connection's key) or
    else botocore's own; against a custom endpoint without either, dummy ones (DynamoDB Local
    accepts any). ``attempts`` bounds retries (a request path wants few); ``connections``
    sizes the connection pool (default 32)."""
    return resolve_dynamodb(settings, attempts, connections).client


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
