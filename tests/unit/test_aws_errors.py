"""AWS's own error answers, which DynamoDB Local never gives (it accepts any key) and AWS is
not reachable from the test machine: the translation must make rejected credentials one-line
settings errors and leave the others to their callers."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from cutover.aws import translate_aws_error
from cutover.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "code",
    [
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "AccessDeniedException",
    ],
)
def test_rejected_credentials_are_settings_errors(code: str) -> None:
    """AWS's own answers, which DynamoDB Local never gives (it accepts any key) and AWS is not
    reachable from the test machine: the translation must make them one-line ConfigErrors."""
    reply: dict = {"Error": {"Code": code, "Message": "The security token is\ninvalid."}}
    translated = translate_aws_error(ClientError(reply, "DescribeTable"))
    assert isinstance(translated, ConfigError)
    assert "\n" not in str(translated) and "security token is invalid" in str(translated)


def test_other_client_errors_are_left_to_their_callers() -> None:
    reply: dict = {"Error": {"Code": "ResourceNotFoundException", "Message": "no table"}}
    assert translate_aws_error(ClientError(reply, "DescribeTable")) is None
