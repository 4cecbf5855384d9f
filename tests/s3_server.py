"""A local S3-compatible endpoint on loopback for the storage tests: moto's standalone server.

The session fixture ``s3_storage_url`` starts moto's ``ThreadedMotoServer`` on 127.0.0.1 on a
free port, creates a bucket with a unique name and points this process at it through the
standard ``AWS_ENDPOINT_URL_S3`` (boto3 and cutover's Staging honour it; the generic
``AWS_ENDPOINT_URL`` is never set, since it would send DynamoDB there too) with dummy keys. It
yields an ``S3Storage``: ``.url`` is ``s3://<bucket>/<prefix>`` for ``CUTOVER_STAGING``, and
``.env`` the variables a subprocess needs to reach the same bucket (merge them into its
environment). Everything set here is restored when the session ends.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

HOST = "127.0.0.1"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Storage:
    """A bucket on the local S3 endpoint; ``url`` is the storage URL, ``env`` what a
    subprocess needs (endpoint, dummy keys, region, and ``CUTOVER_STAGING`` itself)."""

    url: str
    bucket: str
    prefix: str
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    def client(self) -> Any:
        """A boto3 S3 client on the endpoint (to list or read what was written)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, under: str = "") -> list[str]:
        """Every object key of the bucket under ``<prefix>/<under>``, relative to the prefix."""
        start = f"{self.prefix}/{under}" if under else f"{self.prefix}/"
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=start)
        )
        return sorted(
            obj["Key"].removeprefix(f"{self.prefix}/")
            for page in pages
            for obj in page.get("Contents", [])
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_storage_url() -> Iterator[S3Storage]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    endpoint = f"http://{HOST}:{port}"
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    saved = {k: os.environ.get(k) for k in (*env, "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")}
    os.environ.update(env)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_SECURITY_TOKEN", None)
    bucket = f"cutover-test-{uuid.uuid4().hex[:12]}"
    prefix = "storage"
    storage = S3Storage(
        url=f"s3://{bucket}/{prefix}",
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint,
        env={**env, "CUTOVER_STAGING": f"s3://{bucket}/{prefix}"},
    )
    try:
        storage.client().create_bucket(Bucket=bucket)
        yield storage
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
