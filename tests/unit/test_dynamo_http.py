"""The loader's DynamoDB client under faults produced for real by a loopback server
(``tests.unit.fake_dynamo``): botocore's retry rules decide which replies are worth another
attempt, and the callers (the batch writer, the routing layer's store, the guarded put) retry
them; and each thread's connection is closed when its thread ends."""

from __future__ import annotations

import gc
import json
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
from tests.unit.fake_dynamo import HTML_503, Answer, FakeDynamo, dynamo_error, open_sockets

from cutover.errors import TerminalError, TransientError
from cutover.load.batch_writer import Backoff, BatchWriter
from cutover.load.dynamo_http import RETRYABLE_CODES, DynamoHttp, NotJson, RetryableReply
from cutover.load.guarded_put import guarded_put
from cutover.routing.dynamo_store import DynamoStore
from cutover.settings import Settings

pytestmark = pytest.mark.unit

FAST = Backoff(base=0.001, cap=0.01)
GET = '{"TableName":"t","Key":{"PK":{"S":"a"}}}'


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDynamo]:
    with FakeDynamo() as server:
        yield server


@pytest.fixture(scope="module")
def http(fake: FakeDynamo) -> Iterator[DynamoHttp]:
    client = DynamoHttp(Settings.from_env({"CUTOVER_DYNAMODB_ENDPOINT": fake.url}))
    yield client
    client.close()


@pytest.fixture(autouse=True)
def fresh(fake: FakeDynamo) -> None:
    with fake.lock:
        fake.script.clear()
        fake.seen.clear()


# --- which replies are retried -------------------------------------------------------------


def test_an_html_503_is_a_transient_error_that_says_what_answered(
    fake: FakeDynamo, http: DynamoHttp
) -> None:
    fake.answer(Answer(503, HTML_503, content_type="text/html"))
    with pytest.raises(RetryableReply) as caught:
        http.post("GetItem", GET)
    message = str(caught.value)
    assert "HTTP 503" in message and "Http/1.1 Service Unavailable" in message
    assert "not DynamoDB's JSON" in message and "retrying may succeed" in message
    assert isinstance(caught.value, TransientError) and not caught.value.throttling
    assert http.post("GetItem", GET).status == 200  # the same connection answers again


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TransactionInProgressException",
        "TooManyRequestsException",
    ],
)
def test_throttling_codes_are_retryable_throttling(
    fake: FakeDynamo, http: DynamoHttp, code: str
) -> None:
    fake.answer(Answer(400, dynamo_error(code, "Rate exceeded")))
    with pytest.raises(RetryableReply, match=f"HTTP 400 {code} \\(Rate exceeded\\).*slow down"):
        http.post("PutItem", "{}")
    assert code in RETRYABLE_CODES


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, dynamo_error("InternalServerError")),  # botocore: 500 is transient
        (503, b""),  # empty
        (502, b'{"message":"bad gateway"}'),  # JSON without a code
        (501, b"<html>Not Implemented</html>"),  # 5xx without a code: not DynamoDB's
        (400, dynamo_error("RequestTimeout")),  # botocore's transient codes
        (400, dynamo_error("ReplicatedWriteConflictException")),  # retryable in the model
        (429, b""),  # throttling by status, no code
    ],
)
def test_what_botocore_retries_is_retryable(
    fake: FakeDynamo, http: DynamoHttp, status: int, body: bytes
) -> None:
    fake.answer(Answer(status, body))
    with pytest.raises(RetryableReply, match=f"HTTP {status}"):
        http.post("PutItem", "{}")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "ValidationException"),
        (400, "ConditionalCheckFailedException"),
        (400, "ResourceNotFoundException"),
        (400, "AccessDeniedException"),
    ],
)
def test_other_errors_are_returned_to_the_caller(
    fake: FakeDynamo, http: DynamoHttp, status: int, code: str
) -> None:
    fake.answer(Answer(status, dynamo_error(code, "why")))
    reply = http.post("PutItem", "{}")
    assert (reply.status, reply.error_code, reply.json()["message"]) == (status, code, "why")
    assert code not in RETRYABLE_CODES


def test_a_proxy_page_on_a_4xx_reads_as_a_message_not_a_crash(
    fake: FakeDynamo, http: DynamoHttp
) -> None:
    fake.answer(Answer(403, b"<html><h1>Forbidden by proxy</h1></html>", content_type="text/html"))
    reply = http.post("PutItem", "{}")
    assert reply.error_code == ""
    assert reply.json() == {
        "message": "HTTP 403 with a body that is not DynamoDB's JSON: Forbidden by proxy"
    }


def test_a_200_that_is_not_json_is_transient(fake: FakeDynamo, http: DynamoHttp) -> None:
    fake.answer(Answer(200, b"<html>captive portal</html>", content_type="text/html"))
    reply = http.post("GetItem", GET)
    with pytest.raises(NotJson, match="captive portal"):
        reply.json()
    with pytest.raises(ValueError):  # what json.loads raises, for callers that catch that
        reply.json()


def test_a_body_damaged_on_the_way_is_retryable(fake: FakeDynamo, http: DynamoHttp) -> None:
    good = b'{"Item":{"PK":{"S":"a"}}}'
    fake.answer(
        Answer(200, good, {"x-amz-crc32": str(zlib.crc32(good) ^ 1)}),
        Answer(200, good, {"x-amz-crc32": str(zlib.crc32(good))}),
    )
    with pytest.raises(RetryableReply, match="CRC32"):
        http.post("GetItem", GET)
    assert http.post("GetItem", GET).json() == {"Item": {"PK": {"S": "a"}}}


# --- the callers retry them ----------------------------------------------------------------


def test_the_batch_writer_retries_an_html_503_then_writes(
    fake: FakeDynamo, http: DynamoHttp
) -> None:
    fake.answer(Answer(503, HTML_503, content_type="text/html"))
    items = [json.dumps({"PK": {"S": f"K#{i}"}}) for i in range(25)]
    stats = BatchWriter(http, workers=1, backoff=FAST).write("t", items)
    assert stats.items == 25 and stats.throttles == 1
    assert fake.targets() == ["BatchWriteItem", "BatchWriteItem"]


def test_the_batch_writer_retries_throttling_then_writes(
    fake: FakeDynamo, http: DynamoHttp
) -> None:
    fake.answer(Answer(400, dynamo_error("ThrottlingException", "Rate exceeded")))
    stats = BatchWriter(http, workers=1, backoff=FAST).write("t", ['{"PK":{"S":"a"}}'])
    assert stats.items == 1 and stats.throttles == 1 and len(fake.seen) == 2


def test_the_routing_store_retries_an_uncoded_5xx(fake: FakeDynamo, http: DynamoHttp) -> None:
    fake.answer(
        Answer(502, b"<html>Bad Gateway</html>", content_type="text/html"),
        Answer(500, b""),
        Answer(200, b'{"Item":{"PK":{"S":"a"}}}'),
    )
    reply = DynamoStore(http, "").call("GetItem", GET)
    assert reply.json() == {"Item": {"PK": {"S": "a"}}} and len(fake.seen) == 3


def test_the_routing_store_gives_up_after_its_attempts(fake: FakeDynamo, http: DynamoHttp) -> None:
    fake.answer(*[Answer(503, HTML_503, content_type="text/html")] * 3)
    with pytest.raises(TransientError, match=r"failed 3 times.*Service Unavailable"):
        DynamoStore(http, "", attempts=3).call("GetItem", GET)


def test_a_guarded_put_retries_throttling(fake: FakeDynamo, http: DynamoHttp) -> None:
    fake.answer(Answer(400, dynamo_error("ProvisionedThroughputExceededException")))
    assert guarded_put(http, "t", '{"PK":{"S":"a"}}', 3, backoff=FAST) == "written"
    assert len(fake.seen) == 2


def test_a_refused_batch_is_still_terminal(fake: FakeDynamo, http: DynamoHttp) -> None:
    fake.answer(Answer(400, dynamo_error("ValidationException", "key type mismatch")))
    with pytest.raises(TerminalError, match="key type mismatch"):
        BatchWriter(http, workers=1, backoff=FAST).write("t", ['{"PK":{"N":"1"}}'])


# --- connections live as long as their threads ---------------------------------------------


def _settle(check: object, seconds: float = 5.0) -> bool:
    """Whether ``check()`` holds within ``seconds`` (the server closes its ends on EOF)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)  # poll: until check() holds
    return bool(check())  # type: ignore[operator]


def test_each_thread_s_connection_is_closed_when_the_thread_ends(fake: FakeDynamo) -> None:
    http = DynamoHttp(Settings.from_env({"CUTOVER_DYNAMODB_ENDPOINT": fake.url}))
    threads = 12
    before = open_sockets()
    all_posted = threading.Barrier(threads + 1)
    release = threading.Event()

    def one_request() -> None:
        http.post("ListTables", "{}")
        all_posted.wait()
        release.wait()

    pool = [threading.Thread(target=one_request) for _ in range(threads)]
    for t in pool:
        t.start()
    all_posted.wait()
    assert http.open_connections == threads  # one each while they live
    release.set()
    for t in pool:
        t.join()
    gc.collect()
    assert http.open_connections == 0
    assert http.connections_opened == threads and http.requests_sent == threads
    # both ends really closed: the process has no more sockets than before the threads
    assert _settle(lambda: open_sockets() <= before), (open_sockets(), before)
    http.close()


def test_a_client_dropped_without_close_closes_its_connections(fake: FakeDynamo) -> None:
    before = open_sockets()
    http = DynamoHttp(Settings.from_env({"CUTOVER_DYNAMODB_ENDPOINT": fake.url}))
    http.post("ListTables", "{}")
    assert open_sockets() > before
    del http
    gc.collect()
    assert _settle(lambda: open_sockets() <= before)


def test_close_closes_every_thread_s_connection_and_a_thread_reconnects(
    fake: FakeDynamo,
) -> None:
    http = DynamoHttp(Settings.from_env({"CUTOVER_DYNAMODB_ENDPOINT": fake.url}))
    posted, done = threading.Event(), threading.Event()

    def other() -> None:
        http.post("ListTables", "{}")
        posted.set()
        done.wait()

    thread = threading.Thread(target=other)
    thread.start()
    posted.wait()
    http.post("ListTables", "{}")
    assert http.open_connections == 2
    http.close()
    assert http.open_connections == 0
    http.post("ListTables", "{}")
    assert http.open_connections == 1 and http.connections_opened == 3
    done.set()
    thread.join()
    http.close()
