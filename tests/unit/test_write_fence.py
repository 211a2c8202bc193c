"""The write fence both emulators' wrappers share (recsys.local.write_fence): what counts as a write, and
that draining waits for the writes admitted before the fence went up."""

from __future__ import annotations

import threading
import time

from recsys.local.write_fence import WriteFence, is_read


def test_reads_are_get_head_and_the_listed_kinesis_reads():
    assert is_read("GET", None) and is_read("HEAD", None)
    assert not is_read("PUT", None) and not is_read("POST", None) and not is_read("DELETE", None)
    assert is_read("POST", "Kinesis_20131202.GetRecords")
    assert not is_read("POST", "Kinesis_20131202.PutRecords")
    assert not is_read("GET", "secretsmanager.PutSecretValue")  # a JSON target decides, not the method


def test_no_write_is_admitted_once_the_fence_file_exists(tmp_path):
    fence = WriteFence(tmp_path / "fence")
    assert fence.admit()
    fence.release()
    (tmp_path / "fence").touch()
    assert not fence.admit()
    assert fence.in_flight == 0
    (tmp_path / "fence").unlink()
    assert fence.admit()


def test_drain_waits_for_the_writes_in_flight(tmp_path):
    fence = WriteFence(tmp_path / "fence")
    assert fence.drain(timeout=0.1) == (False, False)  # not fenced: nothing to confirm
    assert fence.admit()
    (tmp_path / "fence").touch()
    assert fence.drain(timeout=0.1) == (True, False)  # one write still running
    released = []
    threading.Timer(0.3, lambda: (released.append(time.monotonic()), fence.release())).start()
    assert fence.drain(timeout=5) == (True, True)
    assert released, "drained before the write in flight was done"
