"""How moto and LocalStack answer the calls this project makes, where they differ from each other or
from AWS's documented behaviour. Each test is a row of the table in docs/emulators.md: it asserts what
the row says for each emulator, so the table stays true when an emulator changes.

Every test runs against a real emulator process of each kind (``running_emulator``).
"""

from __future__ import annotations

import io
import json
import time
import zipfile

import psutil
import pytest
from botocore.exceptions import ClientError
from tests.support.fixtures_stack import EMULATORS, listening_addresses, running_emulator

from recsys.core import aws
from recsys.local.aws_resources import delivery_stream_definition, resource_names
from recsys.local.firehose.config import DeliveryConfig, describe_delivery
from recsys.local.firehose.source import Checkpoint, ShardReader

pytestmark = pytest.mark.slow  # not in `make test-fast` (pytest -m 'not slow')


@pytest.fixture(scope="module", params=EMULATORS)
def emulator(request):
    """Settings pointing at one bare emulator with the project's buckets, stream and delivery stream."""
    with running_emulator(request.param) as settings:
        yield settings


def put(settings, stream: str, count: int, key_prefix: str = "k") -> list[dict]:
    records = [{"PartitionKey": f"{key_prefix}{i}", "Data": json.dumps({"i": i}).encode()} for i in range(count)]
    response = aws.client("kinesis", settings).put_records(StreamName=stream, Records=records)
    assert response["FailedRecordCount"] == 0
    return response["Records"]


def fresh_stream(settings, name: str, shards: int = 1) -> str:
    kinesis = aws.client("kinesis", settings)
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    return kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]


def test_account_comes_from_sts(emulator):
    """Row "account id": ARNs are built from get_caller_identity, never hard-coded."""
    account = aws.client("sts", emulator).get_caller_identity()["Account"]
    assert account == {"moto": "123456789012", "localstack": "000000000000"}[emulator.emulator]
    assert f":{account}:stream/{emulator.kinesis_stream}" in describe_delivery(emulator).source_stream_arn


def test_sequence_numbers(emulator):
    """Row "sequence numbers": moto counts 1, 2, ... per shard; LocalStack (like AWS) gives 56-digit
    numbers. Checkpoints keep them as opaque strings, so both work."""
    fresh_stream(emulator, "seq-format")
    numbers = [r["SequenceNumber"] for r in put(emulator, "seq-format", 3)]
    if emulator.emulator == "moto":
        assert numbers == ["1", "2", "3"]
    else:
        assert all(len(n) == 56 and n.isdigit() for n in numbers) and numbers == sorted(numbers, key=int)


def test_a_checkpoint_position_the_shard_does_not_hold(emulator, caplog):
    """Row "stale checkpoint": GetShardIterator AFTER_SEQUENCE_NUMBER with a position the shard does not
    hold. LocalStack raises ResourceNotFoundException (AWS documents InvalidArgumentException): delivery's
    ShardReader falls back to the oldest record on either, so nothing is lost. moto accepts any number
    and silently returns what follows it (nothing here): only the checkpoint's (ARN, creation time)
    check protects a delivery on moto."""
    shard = fresh_stream(emulator, "stale-checkpoint")
    sent = put(emulator, "stale-checkpoint", 5)
    kinesis = aws.client("kinesis", emulator)
    arn = kinesis.describe_stream_summary(StreamName="stale-checkpoint")["StreamDescriptionSummary"]["StreamARN"]
    checkpoint = Checkpoint(emulator.state_dir / "stale.checkpoint.json", arn)
    checkpoint.positions = {shard: "49000000000000000000000000000000000000000000000000000012"}
    reader = ShardReader(kinesis, "stale-checkpoint", checkpoint)
    got = reader.poll()
    if emulator.emulator == "localstack":
        assert [r.sequence_number for r in got] == [r["SequenceNumber"] for r in sent]
        assert "not in the stream any more" in caplog.text
    else:
        assert got == [] and "not in the stream any more" not in caplog.text


def test_stream_is_creating_before_active(emulator):
    """Row "stream creation": moto's stream is ACTIVE at once; LocalStack's is CREATING for about 0.5 s
    (KINESIS_LATENCY), AWS's for seconds. ensure_resources waits with the stream_exists waiter."""
    kinesis = aws.client("kinesis", emulator)
    kinesis.create_stream(StreamName="creating", ShardCount=1)
    status = kinesis.describe_stream_summary(StreamName="creating")["StreamDescriptionSummary"]["StreamStatus"]
    assert status == {"moto": "ACTIVE", "localstack": "CREATING"}[emulator.emulator]


def test_delivery_stream_status_and_description(emulator):
    """Rows "delivery stream status" and "destination description": moto's Kinesis-sourced delivery
    stream is ACTIVE; LocalStack's is CREATING_FAILED (its own consumer needs a JDK, which the stack
    keeps from it, and DynamoDB, which is not started). Both return the definition unchanged, so
    `recsys firehose` reads the same configuration; moto also returns S3DestinationDescription,
    LocalStack only ExtendedS3DestinationDescription (AWS returns both)."""
    firehose = aws.client("firehose", emulator)
    description = firehose.describe_delivery_stream(DeliveryStreamName=emulator.firehose_stream)[
        "DeliveryStreamDescription"
    ]
    assert description["DeliveryStreamStatus"] == {"moto": "ACTIVE", "localstack": "CREATING_FAILED"}[emulator.emulator]
    destination = description["Destinations"][0]
    assert ("S3DestinationDescription" in destination) == (emulator.emulator == "moto")

    account = aws.client("sts", emulator).get_caller_identity()["Account"]
    sent = delivery_stream_definition(resource_names(emulator, account), emulator.buffer_seconds)
    extended = sent["ExtendedS3DestinationConfiguration"]
    config = DeliveryConfig.from_description(description)
    assert (config.source_stream_arn, config.bucket, config.prefix, config.error_prefix) == (
        sent["KinesisStreamSourceConfiguration"]["KinesisStreamARN"],
        emulator.recommendations_bucket,
        extended["Prefix"],
        extended["ErrorOutputPrefix"],
    )
    parameters = {
        p["ParameterName"]: p["ParameterValue"]
        for p in extended["ProcessingConfiguration"]["Processors"][0]["Parameters"]
    }
    assert (config.lambda_arn, str(config.retries)) == (parameters["LambdaArn"], parameters["NumberOfRetries"])


def test_neither_emulator_delivers_from_kinesis_itself(emulator):
    """Row "Firehose consumes Kinesis": on AWS Firehose reads the stream and invokes the Lambda; neither
    emulator does (so `recsys firehose` is the one consumer and nothing is delivered twice)."""
    put(emulator, emulator.kinesis_stream, 20)
    time.sleep(max(3, 2 * emulator.buffer_seconds))
    listed = aws.client("s3", emulator).list_objects_v2(Bucket=emulator.recommendations_bucket)
    assert listed.get("KeyCount", 0) == 0


def test_lambda_functions_do_not_run_without_docker(emulator):
    """Row "Lambda": both accept CreateFunction but need Docker (and its runtime image from a registry) to
    run it. moto's function is Active and Invoke answers a FunctionError; LocalStack's goes Failed and
    Invoke is refused (409). Delivery runs the zip under awslambdaric instead (RECSYS_LAMBDA_INVOKE=runtime)
    with both."""
    lambda_client, iam = aws.client("lambda", emulator), aws.client("iam", emulator)
    role = iam.create_role(
        RoleName="difference-test",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}
                ],
            }
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {'ok': True}\n")
    lambda_client.create_function(
        FunctionName="difference-test",
        Runtime="python3.12",
        Handler="handler.handler",
        Role=role,
        Code={"ZipFile": code.getvalue()},
    )
    deadline = time.monotonic() + 60
    state = "Pending"
    while state == "Pending" and time.monotonic() < deadline:
        state = lambda_client.get_function(FunctionName="difference-test")["Configuration"]["State"]
        time.sleep(0.5)
    assert state == {"moto": "Active", "localstack": "Failed"}[emulator.emulator]
    if emulator.emulator == "moto":
        response = lambda_client.invoke(FunctionName="difference-test", Payload=b"{}")
        payload = response["Payload"].read()  # no Docker: "error running docker"; an engine but no registry:
        assert response.get("FunctionError"), payload  # the image pull fails ("lookup registry-1.docker.io")
        assert payload != b'{"ok": true}', payload
    else:
        with pytest.raises(ClientError) as refused:
            lambda_client.invoke(FunctionName="difference-test", Payload=b"{}")
        assert refused.value.response["Error"]["Code"] == "ResourceConflictException"


def test_glue_catalog(emulator):
    """Row "Glue Data Catalog": moto implements the catalog calls the Glue job's optional catalog step
    makes (--catalog_table); LocalStack community answers 501 (not in the free edition), so run the
    ETL without --catalog_table against it."""
    glue = aws.client("glue", emulator)
    if emulator.emulator == "moto":
        glue.create_database(DatabaseInput={"Name": "difference_test"})
        assert glue.get_database(Name="difference_test")["Database"]["Name"] == "difference_test"
    else:
        with pytest.raises(ClientError) as refused:
            glue.create_database(DatabaseInput={"Name": "difference_test"})
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


def test_quiet_delete_objects(emulator):
    """Row "DeleteObjects Quiet": AWS answers only errors; moto also lists every key as Deleted (even a
    missing one), LocalStack answers nothing. The ETL and the artifact cleanup read only Errors."""
    s3 = aws.client("s3", emulator)
    s3.put_object(Bucket=emulator.scripts_bucket, Key="to-delete", Body=b"x")
    response = s3.delete_objects(
        Bucket=emulator.scripts_bucket,
        Delete={"Objects": [{"Key": "to-delete"}, {"Key": "never-existed"}], "Quiet": True},
    )
    deleted = {d["Key"] for d in response.get("Deleted", [])}
    assert deleted == ({"to-delete", "never-existed"} if emulator.emulator == "moto" else set())
    assert "Errors" not in response


def test_missing_secret(emulator):
    """Row "missing secret": both raise ResourceNotFoundException, as AWS does; moto with HTTP 404,
    LocalStack with AWS's 400. The Lambda's secret look-up catches the exception class only."""
    with pytest.raises(ClientError) as missing:
        aws.client("secretsmanager", emulator).get_secret_value(SecretId="recsys/does-not-exist")
    error = missing.value.response
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == {"moto": 404, "localstack": 400}[emulator.emulator]


def test_listens_on_loopback_only(emulator):
    """Row "listening sockets": LocalStack's gateway binds 0.0.0.0 when GATEWAY_LISTEN names
    127.0.0.1 and its kinesis-mock binds 0.0.0.0 on two random ports; the stack's settings (the
    IPv4-mapped gateway address, a Node preload) keep every socket on loopback, as moto's -H does."""
    port = int(emulator.endpoint_url.rsplit(":", 1)[1])
    owners = [
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid
    ]
    assert owners, "the emulator's listening socket was not found"
    addresses = listening_addresses(owners[0])
    if emulator.emulator == "localstack":
        put(emulator, emulator.kinesis_stream, 1)  # kinesis-mock runs by now (started on first use)
        addresses = listening_addresses(owners[0])
        assert len(addresses) == 3  # gateway + kinesis-mock's plain and TLS ports
    assert addresses and {ip for ip, _ in addresses} <= {"127.0.0.1", "::ffff:127.0.0.1"}
