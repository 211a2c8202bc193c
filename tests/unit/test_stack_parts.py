"""Pieces of the embedded stack that need no running service: the emulator choice and LocalStack's
environment, the PostgreSQL account's reachability check, the saved-state summary."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from recsys.core.config import load_settings
from recsys.core.errors import ConfigError, StackError
from recsys.local.aws_state import StateSummary
from recsys.local.emulators import LocalStack, MotoServer, emulator_for
from recsys.local.pgembedded import ServiceAccount, check_reachable
from recsys.local.write_fence import FENCE_ENV, FENCE_FILE


def test_the_emulator_is_a_setting(tmp_path):
    assert isinstance(emulator_for(load_settings({"RECSYS_STATE_DIR": str(tmp_path)})), MotoServer)
    chosen = load_settings({"RECSYS_STATE_DIR": str(tmp_path), "RECSYS_EMULATOR": "localstack"})
    assert isinstance(emulator_for(chosen), LocalStack)
    with pytest.raises(ConfigError, match="RECSYS_EMULATOR='docker': expected one of moto, localstack"):
        load_settings({"RECSYS_STATE_DIR": str(tmp_path), "RECSYS_EMULATOR": "docker"})


def test_localstack_keeps_its_state_under_home_and_listens_on_loopback(tmp_path):
    localstack = LocalStack(
        load_settings(
            {
                "RECSYS_STATE_DIR": str(tmp_path),
                "RECSYS_EMULATOR": "localstack",
                "RECSYS_LOCALSTACK_VENV": str(tmp_path / "venv"),
            }
        )
    )
    home = tmp_path / "localstack"
    env = localstack.environment(4566, home)
    for name in ("FILESYSTEM_ROOT", "HOME", "TMPDIR"):
        assert Path(env[name]).is_relative_to(home), name
    assert env["OVERRIDE_IN_DOCKER"] == "0"  # else it writes /var/lib/localstack on machines with /.dockerenv
    assert env["GATEWAY_LISTEN"] == "[::ffff:127.0.0.1]:4566"  # 127.0.0.1:4566 would listen on 0.0.0.0
    assert "bind-loopback.cjs" in env["NODE_OPTIONS"] and Path(env["NODE_OPTIONS"].split()[-1]).is_file()
    assert "dynamodb" not in env["SERVICES"].split(",")  # its Firehose must not consume Kinesis
    assert env["OUTBOUND_HTTPS_PROXY"].startswith("http://127.0.0.1:")
    assert env[FENCE_ENV] == str(home / FENCE_FILE)  # the write fence `stack down` raises, under home too
    assert not any(key.startswith(("AWS_", "PG", "RECSYS_")) for key in env if key != FENCE_ENV)  # nothing else of ours
    assert (home / "fs/usr/lib/localstack").resolve() == (tmp_path / "venv/static-libs").resolve()
    assert (home / "fs/var/lib/localstack/lib/java").is_file()  # no JDK can be installed there
    with pytest.raises(StackError, match=r"LocalStack is not installed in .*run `make install`"):
        localstack.check_installed()


def test_an_ancestor_the_service_account_cannot_search_is_named():
    stranger = ServiceAccount("someone", uid=os.geteuid() + 4242, gid=os.getegid() + 4242)
    private = Path(tempfile.mkdtemp(prefix="recsys-unit-"))  # 0700, under the world-searchable temp dir
    try:
        (private / "state").mkdir()
        with pytest.raises(StackError, match=rf"cannot reach {private}/state/pgdata: {private} is drwx------"):
            check_reachable(private / "state" / "pgdata", stranger)
        assert private.stat().st_mode & 0o777 == 0o700  # named, never changed
        private.chmod(0o711)
        check_reachable(private / "state" / "pgdata", stranger)  # search permission is enough
        private.chmod(0o700)
        check_reachable(private / "state" / "pgdata", None)  # not root: the server runs as the caller
    finally:
        shutil.rmtree(private)


def test_state_summary_line():
    summary = StateSummary.of(
        {"a": {"objects": 2, "bytes": 3 * 2**20}, "b": {"objects": 1, "bytes": 0}},
        {"s": {"records": 1234}},
        0.25,
        "2026-11-28T00:00:00+00:00",
    )
    assert summary.line("saved", Path("/x/aws-state")) == (
        "saved AWS state: 3 objects (3.0 MiB) in 2 buckets, 1,234 undelivered records in 1 streams, "
        "/x/aws-state in 0.2 s"
    )
