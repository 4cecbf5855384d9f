"""A lean DynamoDB JSON-protocol client: pre-serialized bodies, SigV4-signed by botocore,
posted over keep-alive HTTP (the stdlib's ``http.client``). Client CPU per item decides load
throughput (see DESIGN.md), so the hot path skips boto3's model-driven serialization and
parsing; what is left is botocore's signer (one ``SigV4Auth`` per thread, built again only
when the credentials change) and one ``http.client`` connection per thread.

botocore decides everything else, as for cutover's boto3 clients: the endpoint, region and
credentials (``cutover.aws.resolve_dynamodb``), and which replies are worth another attempt
(its standard retry rules, those of the adaptive mode ``cutover.aws`` configures). A reply
botocore would retry is raised as ``RetryableReply``, a ``TransientError``; every other
reply is returned for the caller to read."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import weakref
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import orjson
from botocore import exceptions as bx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse, HeadersDict
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.parsers import create_parser
from botocore.retries.standard import (
    RetryContext,
    RetryEventAdapter,
    StandardRetryConditions,
    ThrottlingErrorDetector,
)

from cutover.aws import dynamodb_service_model, resolve_dynamodb, translate_aws_error
from cutover.errors import ConfigError, TerminalError, TransientError
from cutover.settings import Settings

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "DynamoDB_20120810."
_CRC_HEADER = "x-amz-crc32"


def _error_code(raw: str) -> str:
    """``__type`` as botocore reads it: ``com.amazonaws.dynamodb.v20120810#ThrottlingException``
    is ``ThrottlingException``."""
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


def _snippet(body: bytes, limit: int = 120) -> str:
    """What a body that is not JSON says, in one line: an HTML page's text without tags."""
    text = re.sub(r"<[^>]*>", " ", body[:4096].decode("utf-8", "replace"))
    text = " ".join(text.split())
    return (text[:limit] + "…" if len(text) > limit else text) or "an empty body"


class NotJson(TransientError, ValueError):
    """A 2xx reply whose body is not JSON: something between cutover and DynamoDB (a proxy, a
    load balancer) answered in its place. A ``ValueError`` too, as ``json.loads`` raises."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body parsed. An error reply whose body is not JSON (a proxy's or a load
        balancer's page) reads as ``{"message": ...}`` saying so; a 2xx one raises
        ``NotJson``."""
        if not self.body:
            return {}
        try:
            return orjson.loads(self.body)
        except ValueError:  # orjson's JSONDecodeError is one
            if self.status >= 300:
                return {"message": f"HTTP {self.status} with a body that is not DynamoDB's "
                                   f"JSON: {_snippet(self.body)}"}  # fmt: skip
            raise NotJson(
                f"DynamoDB's reply (HTTP {self.status}) is not JSON ({_snippet(self.body)}): "
                "a proxy or load balancer answered in its place; retrying may succeed, else "
                "check the DynamoDB endpoint (CUTOVER_DYNAMODB_ENDPOINT, AWS_ENDPOINT_URL_DYNAMODB)"
            ) from None

    @property
    def error_code(self) -> str:
        """DynamoDB's error code (``ThrottlingException``, …); "" for a success or an error
        without one (a body that is not DynamoDB's JSON)."""
        if self.status < 300:
            return ""
        answer = self.json()
        raw = answer.get("__type") if isinstance(answer, dict) else None
        return _error_code(raw) if isinstance(raw, str) else ""


class RetryableReply(TransientError):
    """A reply botocore's retry rules would try again (throttling, a 5xx, a damaged body).
    ``throttling``: DynamoDB asked the client to slow down, so back off before the retry."""

    def __init__(self, message: str, reply: Reply, throttling: bool) -> None:
        super().__init__(message)
        self.reply = reply
        self.throttling = throttling


class _AnyCode:
    """``code in RETRYABLE_CODES`` asks botocore whether it retries a DynamoDB error with that
    code whatever the HTTP status: its throttling and transient codes, and the errors DynamoDB's
    model marks retryable. Only for replies that did not come through ``DynamoHttp.send``,
    which raises every retryable one."""

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and bool(code) and _rules().retries_code(code)


# Errors after which the same request may succeed, as botocore decides (see ``_AnyCode``).
RETRYABLE_CODES = _AnyCode()


class _Raw:
    """The raw stream of a body already read, as ``AWSResponse`` wants it."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        return [self._body]


@dataclass(frozen=True)
class _Verdict:
    retryable: bool
    throttling: bool
    code: str
    message: str


class _RetryRules:
    """botocore's standard retry rules, those of its clients in standard and adaptive mode,
    applied to one reply as if it were a first attempt (the caller counts the attempts and
    backs off), with the reply parsed by botocore's own parser of DynamoDB's protocol."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._parser = create_parser(model.protocol)
        self._conditions = StandardRetryConditions(max_attempts=2)
        self._throttling = ThrottlingErrorDetector(RetryEventAdapter())
        self._codes: dict[str, bool] = {}

    def retries_code(self, code: str) -> bool:
        known = self._codes.get(code)
        if known is None:
            context = RetryContext(
                attempt_number=1,
                operation_model=self._model.operation_model("PutItem"),
                parsed_response={"Error": {"Code": code, "Message": ""}},
            )
            known = self._codes[code] = self._conditions.is_retryable(context)
        return known

    def judge(
        self, target: str, url: str, status: int, headers: HeadersDict, body: bytes
    ) -> _Verdict:
        try:
            operation = self._model.operation_model(target)
        except bx.OperationNotFoundError:
            raise TerminalError(
                f"DynamoDB has no operation {target!r} (HTTP {status} from {url}); use one "
                "of botocore's DynamoDB operation names, e.g. BatchWriteItem"
            ) from None
        parsed: dict[str, Any] = {}
        if status >= 300:
            response = {"status_code": status, "headers": headers, "body": body, "context": {}}
            try:
                parsed = self._parser.parse(response, operation.output_shape)
            except Exception:  # not even botocore can read it: judged on the status alone
                parsed = {"Error": {"Code": str(status), "Message": ""}}
        context = RetryContext(
            attempt_number=1,
            operation_model=operation,
            parsed_response=parsed,
            http_response=AWSResponse(url, status, headers, _Raw(body)),
        )
        error = parsed.get("Error") or {}
        return _Verdict(
            retryable=self._conditions.is_retryable(context),
            throttling=self._throttling.is_throttling_error_from_context(context),
            code=str(error.get("Code") or ""),
            message=str(error.get("Message") or ""),
        )


@cache
def _rules() -> _RetryRules:
    return _RetryRules(dynamodb_service_model())


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _crc_matches(body: bytes, header: str) -> bool:
    return not header.isdigit() or zlib.crc32(body) == int(header)


@dataclass(frozen=True, eq=False, slots=True)
class Prepared:
    """One signed DynamoDB API call, ready to post: ``target`` (``BatchWriteItem``, …), the
    signed headers and the body's bytes."""

    target: str
    headers: dict[str, str]
    body: bytes


class _Conn:
    """One thread's keep-alive connection and what it did. The pool holds it while its thread
    lives; when the thread ends, it is closed and only its counts are kept."""

    __slots__ = ("http", "opened", "requests")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.http = conn
        self.opened = 0
        self.requests = 0


class _Pool:
    """The connections of live threads and the counts of those gone. The finalizers of the
    threads' state hold this, not the client, so a client can go before its threads do."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[_Conn] = set()
        self.opened_gone = 0
        self.requests_gone = 0

    def add(self, conn: _Conn) -> None:
        with self.lock:
            self.live.add(conn)

    def retire(self, conn: _Conn) -> None:
        """Its thread ended (or the client went): closed, its counts kept."""
        conn.http.close()
        with self.lock:
            if conn in self.live:
                self.live.discard(conn)
                self.opened_gone += conn.opened
                self.requests_gone += conn.requests


class _PerThread:
    """What one thread keeps: its signer (and the credentials it was built with) and its
    connection, closed by a ``weakref.finalize`` when the thread's locals go."""

    __slots__ = ("__weakref__", "conn", "credentials", "signer")

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.credentials: ReadOnlyCredentials | None = None
        self.signer: SigV4Auth | None = None


class DynamoHttp:
    """Thread-safe: each thread keeps its own keep-alive connection, closed when the thread
    ends (or by ``close()``). The stdlib client is used on purpose: per request it costs about
    a third of the CPU urllib3 does.

    ``request(target, body)`` signs one call (``Prepared``), ``send(prepared)`` posts it;
    ``post`` is both. ``connections_opened`` and ``requests_sent`` count over all threads,
    ``open_connections`` the sockets open now."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        try:
            target = resolve_dynamodb(settings)
        except bx.BotoCoreError as exc:
            translated = translate_aws_error(exc)
            if translated is None:
                raise
            raise translated from None
        if target.credentials is None:
            raise translate_aws_error(bx.NoCredentialsError()) or ConfigError(
                "no AWS credentials found for DynamoDB"
            )
        self._credentials: Credentials = target.credentials
        self.endpoint = target.endpoint_url
        self.region = target.region
        self._signing_name = target.signing_name
        self._timeout = timeout
        url = urlsplit(self.endpoint)
        self._host = url.hostname or ""
        self._port = url.port
        # as botocore posts: to the endpoint's path ("/" when it has none)
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._tls: ssl.SSLContext | None = None
        if url.scheme == "https":
            try:
                self._tls = ssl.create_default_context(cafile=target.ca_bundle)
            except OSError as exc:  # ssl.SSLError too: a file that holds no certificate
                raise ConfigError(
                    f"cannot read the CA bundle {target.ca_bundle} ({exc}); fix or unset "
                    "AWS_CA_BUNDLE (or ca_bundle in the AWS profile)"
                ) from None
        self._rules = _rules()
        self._local = threading.local()
        self._pool = _Pool()

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _mine(self) -> _PerThread:
        mine: _PerThread | None = getattr(self._local, "mine", None)
        if mine is None:
            conn = _Conn(self._connect())
            mine = self._local.mine = _PerThread(conn)
            self._pool.add(conn)
            weakref.finalize(mine, self._pool.retire, conn)
        return mine

    @property
    def connections_opened(self) -> int:
        with self._pool.lock:
            return self._pool.opened_gone + sum(c.opened for c in self._pool.live)

    @property
    def requests_sent(self) -> int:
        with self._pool.lock:
            return self._pool.requests_gone + sum(c.requests for c in self._pool.live)

    @property
    def open_connections(self) -> int:
        """Sockets this client holds open now (at most one per live thread that posted)."""
        with self._pool.lock:
            return sum(1 for c in self._pool.live if c.http.sock is not None)

    def request(self, target: str, body: str | bytes) -> Prepared:
        """One DynamoDB API call (``target``: ``BatchWriteItem``, …) signed by botocore."""
        data = body.encode() if isinstance(body, str) else body
        mine = self._mine()
        creds = self._credentials.get_frozen_credentials()
        signer = mine.signer
        if signer is None or creds != mine.credentials:  # first use, or rotated
            signer = mine.signer = SigV4Auth(creds, self._signing_name, self.region)
            mine.credentials = creds
        aws = AWSRequest(
            method="POST",
            url=self.endpoint,
            data=data,
            headers={"X-Amz-Target": TARGET_PREFIX + target, "Content-Type": CONTENT_TYPE},
        )
        signer.add_auth(aws)
        return Prepared(target, dict(aws.headers.items()), data)

    def send(self, prepared: Prepared) -> Reply:
        """Posts a call ``request()`` signed. Network failures become ``TransientError``, a
        reply botocore would retry ``RetryableReply``; any other reply is returned."""
        conn = self._mine().conn
        link = conn.http
        if link.sock is None:  # http.client connects on this request
            conn.opened += 1
        conn.requests += 1
        try:
            link.request("POST", self._path, body=prepared.body, headers=prepared.headers)
            response = link.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            link.close()  # reconnects on next use
            raise TransientError(
                f"DynamoDB at {self.endpoint} did not answer {prepared.target}: {exc}; "
                "retrying may succeed"
            ) from None
        status = response.status
        crc = response.getheader(_CRC_HEADER)
        if status == 200 and (crc is None or _crc_matches(body, crc)):
            return Reply(200, body)
        return self._judged(prepared.target, status, HeadersDict(response.getheaders()), body)

    def _judged(self, target: str, status: int, headers: HeadersDict, body: bytes) -> Reply:
        reply = Reply(status, body)
        verdict = self._rules.judge(target, self.endpoint, status, headers, body)
        code = reply.error_code
        # an error without DynamoDB's code came from something in front of it
        if not (verdict.retryable or (status >= 500 and not code)):
            return reply
        message = f" ({verdict.message})" if verdict.message else ""
        if status < 300:
            problem = f"a body whose CRC32 does not match its {_CRC_HEADER} header (damaged)"
        elif code:
            problem = f"HTTP {status} {code}{message}"
        elif not body.strip():
            problem = f"HTTP {status} and an empty body"
        elif _is_json(body):
            problem = f"HTTP {status} without an error code{message}"
        else:
            problem = (f"HTTP {status} and a body that is not DynamoDB's JSON "
                       f"({_snippet(body)}): a proxy or load balancer answered for it")  # fmt: skip
        action = ("it is throttling: slow down and retry with backoff" if verdict.throttling
                  else "retrying may succeed")  # fmt: skip
        raise RetryableReply(
            f"DynamoDB at {self.endpoint} answered {target} with {problem}; {action}",
            reply,
            verdict.throttling,
        )

    def post(self, target: str, body: str | bytes) -> Reply:
        """POST one DynamoDB API call (see ``send`` for what it raises)."""
        return self.send(self.request(target, body))

    def close(self) -> None:
        """Closes every thread's connection (a thread that posts again reconnects); the
        counters keep what was done."""
        with self._pool.lock:
            live = list(self._pool.live)
        for conn in live:
            conn.http.close()
