"""A lean DynamoDB JSON-protocol client: pre-serialized bodies, SigV4-signed by botocore,
posted over keep-alive HTTP. Client CPU per item decides load throughput (see DESIGN.md), so
the hot path skips boto3's model-driven serialization and parsing."""

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
from botocore.credentials import Credentials

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


class DynamoHttp:
    """Thread-safe: each thread keeps its own keep-alive connection. The stdlib client is used
    on purpose: per request it costs about a third of the CPU urllib3 does."""

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
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            url = urlsplit(self.endpoint)
            cls = (
                http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            )
            conn = cls(url.hostname or "", url.port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def post(self, target: str, body: str | bytes) -> Reply:
        """POST one DynamoDB API call; network failures become ``TransientError``."""
        data = body.encode() if isinstance(body, str) else body
        request = AWSRequest(
            method="POST",
            url=self.endpoint,
            data=data,
            headers={
                "X-Amz-Target": f"DynamoDB_20120810.{target}",
                "Content-Type": "application/x-amz-json-1.0",
            },
        )
        SigV4Auth(self._credentials.get_frozen_credentials(), "dynamodb", self.region).add_auth(
            request
        )
        conn = self._connection()
        try:
            conn.request("POST", "/", body=data, headers=dict(request.headers.items()))
            response = conn.getresponse()
            return Reply(response.status, response.read())
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # reconnects on next use
            raise TransientError(f"DynamoDB at {self.endpoint} did not answer: {exc}") from None

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
