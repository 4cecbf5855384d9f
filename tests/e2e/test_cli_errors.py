"""The `cutover` command when AWS credentials are missing or a service does not answer: one
line on stderr, no traceback, and the README's exit code (2 bad settings, 4 unreachable)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.mysql]

CONTRACT = str(PROJECT_ROOT / "contracts" / "ecommerce.json")
# Everything botocore's credential chain reads from the environment.
AWS_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


def _cutover(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )


def _no_aws_credentials(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AWS_CREDENTIAL_VARS}
    for name in ("config", "credentials"):
        (tmp_path / name).write_text("")
    env["AWS_CONFIG_FILE"] = str(tmp_path / "config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "credentials")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    return env


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_real_aws_without_credentials_is_a_settings_error(tmp_path: Path) -> None:
    env = {**_no_aws_credentials(tmp_path), "CUTOVER_DYNAMODB_ENDPOINT": ""}
    result = _cutover(env, "phase", "show", CONTRACT)
    assert result.returncode == 2, result.stderr
    line = _one_line_error(result)
    assert "no AWS credentials" in line and "AWS_PROFILE" in line, line
    assert "CUTOVER_DYNAMODB_ENDPOINT" in line, line


def test_missing_aws_profile_is_a_settings_error(tmp_path: Path) -> None:
    env = {**_no_aws_credentials(tmp_path), "CUTOVER_DYNAMODB_ENDPOINT": "",
           "AWS_PROFILE": "cutover-no-such-profile"}  # fmt: skip
    result = _cutover(env, "phase", "show", CONTRACT)
    assert result.returncode == 2, result.stderr
    assert "cutover-no-such-profile" in _one_line_error(result)


def test_closed_dynamodb_port_is_an_unreachable_service() -> None:
    endpoint = "http://127.0.0.1:1"
    # One attempt: botocore would otherwise retry the refused connection with backoff.
    env = {**os.environ, "CUTOVER_DYNAMODB_ENDPOINT": endpoint, "AWS_MAX_ATTEMPTS": "1"}
    result = _cutover(env, "phase", "show", CONTRACT)
    assert result.returncode == 4, result.stderr
    line = _one_line_error(result)
    assert f"DynamoDB at {endpoint}" in line, line


def test_closed_mysql_port_is_an_unreachable_service() -> None:
    env = {**os.environ, "CUTOVER_MYSQL_URL": "mysql://root@127.0.0.1:1/shop"}
    result = _cutover(env, "contract", "lint", CONTRACT, "--db")
    assert result.returncode == 4, result.stderr
    line = _one_line_error(result)
    assert "MySQL at mysql://root@127.0.0.1:1/shop" in line, line
