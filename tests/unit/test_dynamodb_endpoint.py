"""One resolution of DynamoDB's endpoint, region and credentials (``cutover.aws.
resolve_dynamodb``, botocore's), shared by boto3's client and the loader's ``DynamoHttp``:
the environment variables botocore honours are honoured by both, and an endpoint with a path
is posted to, and signed for, at that path. Nothing here needs the network: the AWS
endpoints are only resolved, and the local one is a loopback server."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.unit.fake_dynamo import FakeDynamo, Seen

from cutover.aws import dynamodb_client, resolve_dynamodb
from cutover.errors import ConfigError
from cutover.load.dynamo_http import DynamoHttp
from cutover.settings import AwsCredentials, Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No AWS setting of the machine's: no keys, no profile, no instance role to ask."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name == "CUTOVER_DYNAMODB_ENDPOINT":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield monkeypatch


@pytest.fixture
def keyed(env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    env.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    return env


def _both(settings: Settings) -> tuple[str, DynamoHttp]:
    """boto3's client's endpoint, and the loader's client."""
    return dynamodb_client(settings).meta.endpoint_url, DynamoHttp(settings)


def _scope(http: DynamoHttp) -> str:
    """The credential scope of a call the client signs: date/region/service/aws4_request."""
    auth = http.request("ListTables", "{}").headers["Authorization"]
    found = re.search(r"Credential=[^/]+/([^,]+)", auth)
    assert found
    return found.group(1)


def test_fips_endpoint_from_the_environment(keyed: pytest.MonkeyPatch) -> None:
    keyed.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    boto, http = _both(Settings.from_env())
    assert urlsplit(boto).hostname == urlsplit(http.endpoint).hostname
    assert urlsplit(http.endpoint).hostname == "dynamodb-fips.us-east-1.amazonaws.com"


def test_china_partition(keyed: pytest.MonkeyPatch) -> None:
    keyed.setenv("AWS_DEFAULT_REGION", "cn-north-1")
    boto, http = _both(Settings.from_env())
    assert urlsplit(http.endpoint).hostname == "dynamodb.cn-north-1.amazonaws.com.cn"
    assert urlsplit(boto).hostname == urlsplit(http.endpoint).hostname
    assert http.region == "cn-north-1"
    assert _scope(http).endswith("/cn-north-1/dynamodb/aws4_request")


def test_aws_itself_by_default(keyed: pytest.MonkeyPatch) -> None:
    keyed.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    target = resolve_dynamodb(Settings.from_env())
    assert target.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com/"
    assert (target.region, target.signing_name) == ("eu-west-1", "dynamodb")
    assert target.credentials is not None and target.credentials.access_key == "AKIDEXAMPLE"


def test_service_endpoint_variable_without_credentials_is_a_local_one(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8009")
    boto, http = _both(Settings.from_env())
    assert boto == "http://127.0.0.1:8009"
    assert http.endpoint == "http://127.0.0.1:8009/"
    assert "Credential=local/" in http.request("ListTables", "{}").headers["Authorization"]


def test_cutover_endpoint_wins_over_aws_endpoint_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8009")
    env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8010")
    env.setenv("CUTOVER_DYNAMODB_ENDPOINT", "http://127.0.0.1:8011")
    boto, http = _both(Settings.from_env())
    assert boto == "http://127.0.0.1:8011" and http.endpoint == "http://127.0.0.1:8011/"


def test_no_credentials_for_aws_itself_is_a_config_error(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"no AWS credentials found.*AWS_PROFILE"):
        DynamoHttp(Settings.from_env())
    assert resolve_dynamodb(Settings.from_env()).credentials is None


def _signed_for(seen: Seen, credentials: Credentials, region: str) -> bool:
    """Whether the call's signature is the one of its method, host, path and body."""
    auth = seen.headers["Authorization"]
    signed = re.search(r"SignedHeaders=([^,]+)", auth)
    signature = re.search(r"Signature=([0-9a-f]+)", auth)
    assert signed and signature
    names = signed.group(1).split(";")
    headers = {k: v for k, v in seen.headers.items() if k.lower() in names}
    request = AWSRequest(
        method="POST", url=f"http://{seen.headers['Host']}{seen.path}", data=seen.body,
        headers=headers,
    )  # fmt: skip
    request.context["timestamp"] = seen.headers["X-Amz-Date"]
    signer = SigV4Auth(credentials.get_frozen_credentials(), "dynamodb", region)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    return bool(expected == signature.group(1))


@pytest.mark.parametrize("path", ["", "/ddb/v1"])
def test_an_endpoint_path_is_posted_to_and_signed_as_botocore_does(
    keyed: pytest.MonkeyPatch, path: str
) -> None:
    creds = Credentials("AKIDEXAMPLE", "secret")
    with FakeDynamo(path) as fake:
        keyed.setenv("AWS_ENDPOINT_URL_DYNAMODB", fake.url)
        settings = Settings.from_env()
        dynamodb_client(settings).list_tables()
        http = DynamoHttp(settings)
        assert http.post("ListTables", "{}").json() == {"TableNames": []}
        http.close()
    boto_call, our_call = fake.seen
    assert boto_call.path == our_call.path == (path or "/")
    assert _signed_for(boto_call, creds, "us-east-1")
    assert _signed_for(our_call, creds, "us-east-1")
    # the check tells: the same call is not signed for another path
    assert not _signed_for(replace(our_call, path=our_call.path + "x"), creds, "us-east-1")


def test_tls_is_verified_with_botocore_s_certificates(
    keyed: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert Path(resolve_dynamodb(Settings.from_env()).ca_bundle).is_file()
    keyed.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    assert resolve_dynamodb(Settings.from_env()).ca_bundle == str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"cannot read the CA bundle .*AWS_CA_BUNDLE"):
        DynamoHttp(Settings.from_env())


def test_the_settings_key_wins_over_the_environment_s(keyed: pytest.MonkeyPatch) -> None:
    """An Airflow connection's key is what both clients sign with."""
    settings = replace(
        Settings.from_env(), aws_credentials=AwsCredentials("AKIDCONN", "secret", "token")
    )
    target = resolve_dynamodb(settings)
    assert target.credentials is not None and target.credentials.access_key == "AKIDCONN"
    assert target.client._request_signer._credentials.access_key == "AKIDCONN"
    headers = DynamoHttp(settings).request("ListTables", "{}").headers
    assert "Credential=AKIDCONN/" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"] == "token"
