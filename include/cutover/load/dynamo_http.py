"""A lean DynamoDB JSON-protocol client: pre-serialized bodies, SigV4-signed by botocore,
posted over keep-alive HTTP (the stdlib's ``http.client``). Client CPU per item decides load
throughput (see DESIGN.md), so the hot path skips boto3's model-driven serialization and
parsing; what is left is botocore's signer (one ``SigV4Auth`` per thread, built again only
when the credentials change) and one ``http.client`` connection per thread."""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from cutover.errors import TerminalError, TransientError
from cutover.settings import Settings

# Errors after which the same request may succeed (DynamoDB's throttling and capacity codes).
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)

SERVICE = "dynamodb"
CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "DynamoDB_20120810."


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body) if self.body else {}

    @property
    def error_code(self) -> str:
        if self.status < 400:
            return ""
        raw = str(self.json().get("__type", ""))
        return raw.rsplit("#", 1)[-1]


@dataclass(frozen=True, eq=False, slots=True)
class Prepared:
    """One signed DynamoDB API call, ready to post: ``target`` (``BatchWriteItem``, …), the
    signed headers and the body's bytes."""

    target: str
    headers: dict[str, str]
    body: bytes


class _PerThread:
    """What one thread keeps: its signer (and the credentials it was built with), its
    keep-alive connection, and what that connection did."""

    __slots__ = ("conn", "credentials", "opened", "registered", "requests", "signer")

    def __init__(self) -> None:
        self.credentials: ReadOnlyCredentials | None = None
        self.signer: SigV4Auth | None = None
        self.conn: http.client.HTTPConnection | None = None
        self.registered = False
        self.opened = 0
        self.requests = 0


class DynamoHttp:
    """Thread-safe: each thread keeps its own keep-alive connection. The stdlib client is used
    on purpose: per request it costs about a third of the CPU urllib3 does.

    ``request(target, body)`` signs one call (``Prepared``), ``send(prepared)`` posts it;
    ``post`` is both. ``connections_opened`` and ``requests_sent`` count over all threads."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        self.region = settings.region
        self.endpoint = (
            settings.dynamodb_endpoint or f"https://dynamodb.{settings.region}.amazonaws.com"
        ).rstrip("/") + "/"
        given = settings.aws_credentials
        if given is not None:
            creds = Credentials(given.access_key_id, given.secret_access_key, given.session_token)
        else:
            creds = boto3.Session().get_credentials()
        if creds is None:
            if not settings.dynamodb_endpoint:
                raise TerminalError(
                    "no AWS credentials found for DynamoDB; set AWS_PROFILE or "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or CUTOVER_DYNAMODB_ENDPOINT"
                )
            creds = Credentials("local", "local")
        self._credentials = creds
        self._timeout = timeout
        url = urlsplit(self.endpoint)
        self._host = url.hostname or ""
        self._port = url.port
        self._conn_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        self._local = threading.local()
        self._threads: list[_PerThread] = []  # those whose connection may be open
        self._lock = threading.Lock()
        self._closed_opened = 0
        self._closed_requests = 0

    def _mine(self) -> _PerThread:
        mine: _PerThread | None = getattr(self._local, "mine", None)
        if mine is None:
            mine = self._local.mine = _PerThread()
        return mine

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._closed_opened + sum(t.opened for t in self._threads)

    @property
    def requests_sent(self) -> int:
        with self._lock:
            return self._closed_requests + sum(t.requests for t in self._threads)

    def request(self, target: str, body: str | bytes) -> Prepared:
        """One DynamoDB API call (``target``: ``BatchWriteItem``, …) signed by botocore."""
        data = body.encode() if isinstance(body, str) else body
        mine = self._mine()
        creds = self._credentials.get_frozen_credentials()
        signer = mine.signer
        if signer is None or creds != mine.credentials:  # first use, or rotated
            signer = mine.signer = SigV4Auth(creds, SERVICE, self.region)
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
        """Posts a call ``request()`` signed; network failures become ``TransientError``."""
        mine = self._mine()
        conn = mine.conn
        if conn is None:
            conn = mine.conn = self._conn_class(self._host, self._port, timeout=self._timeout)
        if conn.sock is None:  # http.client connects on this request
            if not mine.registered:
                with self._lock:
                    self._threads.append(mine)
                    mine.registered = True
            mine.opened += 1
        mine.requests += 1
        try:
            conn.request("POST", "/", body=prepared.body, headers=prepared.headers)
            response = conn.getresponse()
            return Reply(response.status, response.read())
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # reconnects on next use
            raise TransientError(f"DynamoDB at {self.endpoint} did not answer: {exc}") from None

    def post(self, target: str, body: str | bytes) -> Reply:
        """POST one DynamoDB API call; network failures become ``TransientError``."""
        return self.send(self.request(target, body))

    def close(self) -> None:
        """Closes every thread's connection (a thread that posts again reconnects); the
        counters keep what was done."""
        with self._lock:
            for mine in self._threads:
                self._closed_opened += mine.opened
                self._closed_requests += mine.requests
                mine.opened = mine.requests = 0
                mine.registered = False
                if mine.conn is not None:
                    mine.conn.close()
            self._threads.clear()
