"""Only ``AWS_ENDPOINT_URL_DYNAMODB`` names DynamoDB Local (no CUTOVER_DYNAMODB_ENDPOINT, no
key): the table that boto3's client creates is the table the loader's own client writes, as
``prepare`` then ``backfill`` do. Before botocore resolved both, the loader posted to AWS's
endpoint and its error blamed the table's capacity."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from tests.unit.test_dynamodb_endpoint import env  # noqa: F401  (no AWS setting of the machine's)

from cutover.aws import dynamodb_client
from cutover.bench.ceiling import fresh_table
from cutover.load.batch_writer import BatchWriter
from cutover.load.dynamo_http import DynamoHttp
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]


def test_the_loader_writes_where_aws_endpoint_url_dynamodb_points(
    settings: Settings,
    env: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    endpoint = settings.dynamodb_endpoint
    assert endpoint, "the suite's settings name DynamoDB Local"
    env.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    only_env = replace(settings, dynamodb_endpoint=None, aws_credentials=None)
    client = dynamodb_client(only_env)
    table = f"{settings.table_prefix}endpoint_env"
    fresh_table(client, table)
    http = DynamoHttp(only_env)
    try:
        assert http.endpoint.rstrip("/") == endpoint.rstrip("/")
        bodies = [json.dumps({"item_id": {"N": str(i)}, "v": {"S": "x"}}) for i in range(60)]
        stats = BatchWriter(http, workers=2).write(table, bodies)
    finally:
        http.close()
    assert stats.items == 60
    count = client.scan(TableName=table, Select="COUNT", ConsistentRead=True)["Count"]
    client.delete_table(TableName=table)
    assert count == 60
