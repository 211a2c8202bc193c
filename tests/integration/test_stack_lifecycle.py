"""The embedded stack across `recsys stack down` / `up`, on both emulators, and its PostgreSQL's security.

* AWS state: S3 objects and the Kinesis records not yet delivered are there after `up`, records of one
  partition key in their order, and delivery resumes with nothing lost and nothing delivered twice.
* Ports: the emulator's and PostgreSQL's ports are kept although the old ones are in TIME_WAIT.
* PostgreSQL: password (SCRAM) authentication, its own group, nothing chmod-ed outside the state dir.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from tests.support.environment import needs
from tests.support.fixtures_stack import EMULATORS

from recsys.core import aws
from recsys.core.config import load_settings
from recsys.local import pgembedded
from recsys.local.firehose.delivery import build_delivery

pytestmark = pytest.mark.slow  # not in `make test-fast` (pytest -m 'not slow')

RECSYS = str(Path(sys.executable).with_name("recsys"))
ROOT_ONLY = needs("root", os.geteuid() == 0, "PostgreSQL runs as a service account only under root")


def cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([RECSYS, *args], capture_output=True, text=True, env=env, timeout=300, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"recsys {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def clean_env(state_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "RECSYS_"))}
    return {**env, "RECSYS_STATE_DIR": str(state_dir), **extra}


def stack_settings(env: dict):
    """Settings as a shell after `eval "$(recsys stack env)"` sees them."""
    exports = cli(env, "stack", "env").stdout
    values = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
    return load_settings({**env, **{k: v.strip("'") for k, v in values.items()}})


# -- AWS state and ports across down/up, on both emulators ------------------------------------------
OBJECTS = {  # (bucket setting, key) -> (body, content type, metadata)
    ("datalake_bucket", "ratings_ml_training/_manifest.json"): (b'{"row_count": 3}', "application/json", {}),
    ("artifacts_bucket", "models/v1/model.npz"): (os.urandom(1 << 20), "application/octet-stream", {"run": "v1"}),
    ("scripts_bucket", "a key with spaces/ünïcödé.txt"): ("ünïcödé".encode(), "text/plain; charset=utf-8", {}),
    ("scripts_bucket", "folder-marker/"): (b"", "binary/octet-stream", {}),
}
KEYS = [f"session-{i}" for i in range(5)]


def records(first: int, count: int) -> list[dict]:
    """Events numbered ``first``.. spread over five partition keys, so each key has several in order."""
    return [
        {"PartitionKey": KEYS[n % len(KEYS)], "Data": json.dumps({"key": KEYS[n % len(KEYS)], "n": n}).encode()}
        for n in range(first, first + count)
    ]


def deliver(settings, handlers_dir: Path):
    delivery = build_delivery(settings, code_dir=handlers_dir, handler="passthrough.echo")
    try:
        return delivery.run(until_idle=1.5)
    finally:
        delivery.close()


def delivered_lines(settings) -> list[dict]:
    s3 = aws.client("s3", settings)
    bucket = settings.recommendations_bucket
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    return [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
        if line.strip()
    ]


def stream_contents(settings) -> list[dict]:
    kinesis = aws.client("kinesis", settings)
    out = []
    for shard in kinesis.list_shards(StreamName=settings.kinesis_stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=settings.kinesis_stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        got = kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        out += [json.loads(r["Data"]) for r in got]
    return out


def time_wait_ports(expected: set[int], timeout: float = 5) -> set[int]:
    """Local ports of TIME_WAIT sockets (`ss`: psutil leaves them out), once ``expected`` are among them
    (the closes take a moment) or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        listing = subprocess.run(
            ["ss", "-Htan", "state", "time-wait"], capture_output=True, text=True, check=False
        ).stdout
        ports = {int(line.split()[-2].rsplit(":", 1)[1]) for line in listing.splitlines() if line.strip()}
        if expected <= ports or time.monotonic() > deadline:
            return ports
        time.sleep(0.1)


def close_from_the_server_side(port: int) -> None:
    """One HTTP request with ``Connection: close``, read to the end: the server closes first, so its
    side of the connection (local port ``port``) stays in TIME_WAIT for a minute."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        while conn.recv(65536):
            pass


@dataclass
class Cycle:
    """What one stack saw before `down` and after `up`."""

    before: object  # Settings before down
    after: object  # Settings after up
    down_output: str
    up_output: str
    time_wait_at_up: set[int]
    delivered_before: int


@pytest.fixture(scope="module", params=EMULATORS)
def cycled(request, streaming_handlers_dir):
    """A stack of its own: objects put, 10 records delivered and 30 not, connections left open to both
    servers (so their ports are in TIME_WAIT after `down`), then `down` and `up` again."""
    state_dir = Path(tempfile.mkdtemp(prefix=f"recsys-cycle-{request.param}-"))
    env = clean_env(state_dir, RECSYS_EMULATOR=request.param)
    try:
        cli(env, "stack", "up")
        before = stack_settings(env)
        s3 = aws.client("s3", before)
        for (bucket, key), (body, content_type, metadata) in OBJECTS.items():
            s3.put_object(
                Bucket=getattr(before, bucket), Key=key, Body=body, ContentType=content_type, Metadata=metadata
            )
        kinesis = aws.client("kinesis", before)
        kinesis.put_records(StreamName=before.kinesis_stream, Records=records(0, 10))
        delivered = deliver(before, streaming_handlers_dir).delivered
        for start in (10, 20, 30):  # one PutRecords per ten, so per-key order is the sending order
            kinesis.put_records(StreamName=before.kinesis_stream, Records=records(start, 10))

        emulator_port = int(before.endpoint_url.rsplit(":", 1)[1])
        close_from_the_server_side(emulator_port)
        pg = socket.create_connection(("127.0.0.1", before.pg_port))  # idle: the server closes it at `down`
        down = cli(env, "stack", "down").stdout
        while pg.recv(65536):  # to the end, then close: the server's side stays in TIME_WAIT (closing
            pass  # with unread data, or writing, would reset the connection instead)
        pg.close()
        time_wait = time_wait_ports({before.pg_port, emulator_port})
        up = cli(env, "stack", "up").stdout
        yield Cycle(before, stack_settings(env), down, up, time_wait, delivered)
    finally:
        cli(env, "stack", "down", "--discard", check=False)
        subprocess.run(["rm", "-rf", str(state_dir)], check=False)


def test_ports_are_kept_although_the_old_ones_are_in_time_wait(cycled):
    ports = (int(cycled.before.endpoint_url.rsplit(":", 1)[1]), cycled.before.pg_port)
    assert set(ports) <= cycled.time_wait_at_up, "the test meant to leave both ports in TIME_WAIT"
    assert (int(cycled.after.endpoint_url.rsplit(":", 1)[1]), cycled.after.pg_port) == ports


def test_objects_are_there_after_up(cycled):
    s3 = aws.client("s3", cycled.after)
    for (bucket, key), (body, content_type, metadata) in OBJECTS.items():
        got = s3.get_object(Bucket=getattr(cycled.after, bucket), Key=key)
        assert got["Body"].read() == body, key
        assert got["ContentType"] == content_type and got["Metadata"] == metadata, key


def test_only_undelivered_records_are_back_in_order(cycled):
    assert cycled.delivered_before == 10
    back = stream_contents(cycled.after)
    assert sorted(r["n"] for r in back) == list(range(10, 40))
    for key in KEYS:
        numbers = [r["n"] for r in back if r["key"] == key]
        assert numbers == sorted(numbers), f"{key} out of order: {numbers}"


def test_down_and_up_say_what_they_saved_and_restored(cycled):
    assert "saved AWS state: " in cycled.down_output and "30 undelivered records in 1 streams" in cycled.down_output
    assert "restored (saved " in cycled.up_output and "30 undelivered records" in cycled.up_output
    assert "not stopped by `recsys stack down`" not in cycled.up_output


def test_delivery_resumes_with_nothing_lost_and_nothing_twice(cycled, streaming_handlers_dir):
    stats = deliver(cycled.after, streaming_handlers_dir)
    assert stats.records_in == stats.delivered == 30
    numbers = sorted(line["n"] for line in delivered_lines(cycled.after))
    assert numbers == list(range(40))  # the 10 delivered before `down` (restored objects) + the 30 after


def test_a_killed_emulator_is_reported_at_the_next_up(state_dir):
    """Only `down` saves: after a SIGKILL the next `up` says what was lost instead of starting silently empty."""
    env = clean_env(state_dir)
    cli(env, "stack", "up")
    settings = stack_settings(env)
    aws.client("s3", settings).put_object(Bucket=settings.scripts_bucket, Key="lost", Body=b"x")
    emulator_pid = json.loads((state_dir / "stack.json").read_text())["aws"]["pid"]
    os.kill(emulator_pid, signal.SIGKILL)
    try:
        up = cli(env, "stack", "up").stdout
        assert f"(pid {emulator_pid}) was not stopped by `recsys stack down`" in up and "are lost" in up
        listed = aws.client("s3", stack_settings(env)).list_objects_v2(Bucket=settings.scripts_bucket)
        assert listed.get("KeyCount", 0) == 0
    finally:
        down = cli(env, "stack", "down", "--discard").stdout
    assert "AWS state discarded" in down and not (state_dir / "aws-state").exists()
    assert "restored" not in cli(env, "stack", "up").stdout  # nothing saved, nothing restored
    cli(env, "stack", "down", "--discard")


# -- PostgreSQL security ----------------------------------------------------------------------------
def test_postgres_refuses_connections_without_the_password(stack, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)  # libpq would read it
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    params = {k: v for k, v in stack.pg_params().items() if k != "password"}
    for password in (None, "wrong"):
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(connect_timeout=5, **params, **({"password": password} if password else {}))
    psycopg2.connect(connect_timeout=5, **stack.pg_params()).close()


def test_the_password_is_private_and_exported(stack):
    password_file = pgembedded.password_file(stack.state_dir)
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((stack.state_dir / "stack.env").stat().st_mode) == 0o600
    assert stack.pg_password == password_file.read_text().strip() and len(stack.pg_password) >= 24
    exports = cli({**os.environ}, "stack", "env").stdout
    assert f"export PGPASSWORD={stack.pg_password}" in exports
    hba = (stack.state_dir / "pgdata" / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and {r[-1] for r in rules} == {"scram-sha-256"} and {r[0] for r in rules} == {"host"}


@ROOT_ONLY
def test_postgres_runs_with_a_group_of_its_own(stack):
    pid = json.loads((stack.state_dir / "stack.json").read_text())["postgres"]["pid"]
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    gids = {int(g) for g in status["Gid"].split()}
    groups = status["Groups"].split()
    account = pgembedded.service_account()
    assert gids == {account.gid} and account.gid != 0 and groups in ([], [str(account.gid)])


@ROOT_ONLY
def test_permissions_outside_the_state_dir_are_never_changed():
    """A 0700 directory above the state dir is refused in one line, never opened up; one the service
    account can pass keeps its mode."""
    parent = Path(tempfile.mkdtemp(prefix="recsys-private-"))  # 0700
    temp_mode = Path(tempfile.gettempdir()).stat().st_mode
    try:
        env = clean_env(parent / "state")
        refused = cli(env, "stack", "up", check=False)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"cannot reach {parent / 'state' / 'pgdata'}: {parent} is drwx------" in refused.stderr
        assert stat.S_IMODE(parent.stat().st_mode) == 0o700
        assert not (parent / "state" / "stack.json").exists()  # refused before anything started

        parent.chmod(0o711)  # search only, as an administrator might allow it
        cli(env, "stack", "up")
        cli(env, "stack", "down", "--discard")
        assert stat.S_IMODE(parent.stat().st_mode) == 0o711
        assert Path(tempfile.gettempdir()).stat().st_mode == temp_mode
    finally:
        cli(clean_env(parent / "state"), "stack", "down", "--discard", check=False)
        subprocess.run(["rm", "-rf", str(parent)], check=False)


# -- the state dir is private -------------------------------------------------------------------------
READER = r"""
import json, os, sys
opened = []
for path in json.load(sys.stdin):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as handle:
                handle.read(1)
        opened.append(path)
    except OSError:
        pass
print(json.dumps(opened))
"""


def as_nobody(script: str, stdin: str) -> str:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-I", "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        cwd="/",
        check=True,
    ).stdout


@ROOT_ONLY
def test_another_local_user_reads_nothing_in_the_state_dir(cycled):
    """After a down/up cycle with deliveries (stack.json, stack.env, the password, Firehose
    checkpoints, the saved AWS state with its S3 object files and Kinesis records, the emulator's
    home, logs): the user nobody opens no file and lists no folder by its path; the PostgreSQL
    account owns only its data and log folders."""
    state_dir = Path(cycled.after.state_dir)
    account = pgembedded.service_account()
    paths, foreign = [], []
    for root, dirs, files in os.walk(state_dir):
        for name in dirs + files:
            path = Path(root) / name
            if path.relative_to(state_dir).parts[0] in ("pgdata", "pglog"):
                continue
            paths.append(str(path))
            if path.lstat().st_uid != os.geteuid():
                foreign.append(str(path))
    names = {Path(p).relative_to(state_dir).parts[0] for p in paths}
    assert {"stack.json", "stack.env", "postgres.password", "firehose", "logs", "aws-state.restored"} <= names, names
    assert not foreign, f"not the invoking user's: {foreign[:5]}"
    assert as_nobody(READER, json.dumps(paths + [str(state_dir)])) == "[]\n"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o701
    assert {p.stat().st_uid for p in (state_dir / "pgdata", state_dir / "pglog")} == {account.uid}


@ROOT_ONLY
def test_a_link_planted_in_an_old_logs_folder_is_not_followed(state_dir):
    """An older release let the PostgreSQL account own ``logs/``: a link it planted there (to a
    root-only file) is removed at `up`, and the folder is the invoking user's again."""
    account = pgembedded.service_account()
    secret = Path(tempfile.mkdtemp(prefix="recsys-secret-")) / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    state_dir.chmod(0o701)
    logs = state_dir / "logs"
    logs.mkdir()
    (logs / "moto.log").symlink_to(secret)
    os.chown(logs / "moto.log", account.uid, account.gid, follow_symlinks=False)
    os.chown(logs, account.uid, account.gid)
    env = clean_env(state_dir)
    try:
        cli(env, "stack", "up")
        assert secret.read_text() == "root's\n"
        assert logs.lstat().st_uid == os.geteuid() and stat.S_IMODE(logs.stat().st_mode) == 0o700
        assert not (logs / "moto.log").is_symlink()
    finally:
        cli(env, "stack", "down", "--discard", check=False)
        subprocess.run(["rm", "-rf", str(secret.parent)], check=False)


# -- `stack down` under traffic ------------------------------------------------------------------------
@pytest.mark.parametrize("emulator", EMULATORS)
def test_stack_down_under_traffic_loses_no_acknowledged_event(emulator, state_dir, streaming_handlers_dir):
    """A producer keeps writing (and logs every record Kinesis acknowledges) through `stack down` and
    `up`; 16 MiB of S3 objects make the save take a while. Every acknowledged event is delivered
    exactly once after `up`: the emulator accepts no write from the moment its state is saved."""
    import threading

    from botocore.exceptions import BotoCoreError, ClientError

    env = clean_env(state_dir, RECSYS_EMULATOR=emulator)
    cli(env, "stack", "up")
    settings = stack_settings(env)
    s3 = aws.client("s3", settings)
    for i in range(16):
        s3.put_object(Bucket=settings.scripts_bucket, Key=f"ballast/{i}", Body=os.urandom(1 << 20))
    acknowledged, stop, sent = [], threading.Event(), [0]

    def produce():
        kinesis = aws.client("kinesis", settings)
        while not stop.is_set():
            first = sent[0]
            sent[0] += 10
            try:
                response = kinesis.put_records(StreamName=settings.kinesis_stream, Records=records(first, 10))
            except (BotoCoreError, ClientError):
                time.sleep(0.02)
                continue
            acknowledged.extend(first + i for i, r in enumerate(response["Records"]) if not r.get("ErrorCode"))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 100 and time.monotonic() < deadline:  # the producer is under way
            time.sleep(0.05)
        before_down = len(acknowledged)
        down = cli(env, "stack", "down").stdout
        cli(env, "stack", "up")
        time.sleep(1.0)
    finally:
        stop.set()
        producer.join(60)
    try:
        after = stack_settings(env)
        deliver(after, streaming_handlers_dir)
        delivered = [line["n"] for line in delivered_lines(after)]
    finally:
        cli(env, "stack", "down", "--discard", check=False)
    lost = set(acknowledged) - set(delivered)
    duplicated = len(delivered) - len(set(delivered))
    print(
        f"\nrestart under traffic ({emulator}): sent {sent[0]}, acknowledged {len(acknowledged)} "
        f"({before_down} before down), delivered {len(delivered)}, lost {len(lost)}, duplicated {duplicated}"
    )
    assert "saved AWS state" in down and "write fence" not in down
    assert before_down > 0 and len(acknowledged) > before_down, "the producer must run through down and up"
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:10]}"
    assert set(delivered) <= set(range(sent[0]))
    assert duplicated == 0


def test_replay_cut_off_says_how_far_it_got_and_resumes_from_the_offset(state_dir, streaming_handlers_dir, tmp_path):
    """`recsys replay --from-file` whose emulator stops accepting writes midway exits 1 saying how many
    events it sent and how many were acknowledged, and the byte offset to resume from; resumed from
    there, every line is delivered exactly once."""
    from recsys.local.emulators import emulator_for

    env = clean_env(state_dir)
    cli(env, "stack", "up")
    try:
        settings = stack_settings(env)
        lines = [json.dumps({"session_id": f"s-{n}", "n": n}) for n in range(600)]
        events = tmp_path / "events.jsonl"
        events.write_text("\n".join(lines) + "\n")
        replay_env = {**env, **settings.as_env()}
        replay = subprocess.Popen(
            [RECSYS, "replay", "--from-file", str(events), "--rate", "300"],
            env=replay_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while len(stream_contents(settings)) < 50 and time.monotonic() < deadline:  # fence midway
            time.sleep(0.1)
        moto = emulator_for(settings)
        port = int(settings.endpoint_url.rsplit(":", 1)[1])
        assert moto.fence(port, state_dir / moto.name)
        _, stderr = replay.communicate(timeout=120)
        moto.unfence(state_dir / moto.name)
        assert replay.returncode == 1, stderr
        report = re.search(
            r"error: replay interrupted \(.*\): ([\d,]+) of 600 events sent, ([\d,]+) acknowledged; "
            r"resume with --from-offset (\d+)",
            stderr,
        )
        assert report, stderr[-500:]
        acknowledged, offset = int(report.group(2).replace(",", "")), int(report.group(3))
        assert 0 < acknowledged < 600 and offset == sum(len(line) + 1 for line in lines[:acknowledged])
        cli(replay_env, "replay", "--from-file", str(events), "--from-offset", str(offset), "--rate", "0")
        deliver(settings, streaming_handlers_dir)
        delivered = sorted(line["n"] for line in delivered_lines(settings))
        assert delivered == list(range(600))
    finally:
        cli(env, "stack", "down", "--discard", check=False)
