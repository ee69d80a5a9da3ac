"""Concurrent GPU jobs on one workstation get different GPUs (lock files), and a scheduler's
choice (CUDA_VISIBLE_DEVICES) is left alone.

The children hold their claims until the parent closes their stdin, and the parent waits for
each child's own report (its GPUs, or its "waiting" log line) rather than for a fixed time: a
child that is slow to import torch on a loaded machine only makes the test slower, never wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds; only a hung child gets near it

CLAIM = """
import logging, os, sys
sys.path.insert(0, {repo!r})
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from pipeline_lib.devices import claim_gpus
got = claim_gpus({n}, lock_dir={locks!r}, poll_seconds=0.05, total=4)
print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
sys.stdin.read()  # hold the claim until the parent closes our stdin
"""


def start(n, locks, env=None):
    code = CLAIM.format(repo=str(REPO), n=n, locks=str(locks))
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"} if env is None else env
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def release(*procs):
    """Tell each child to exit and wait for it, so that its locks are dropped."""
    for p in procs:
        p.stdin.close()
    for p in procs:
        assert p.wait(timeout=TIMEOUT) == 0, p.stderr.read()


def wait_for_line(stream, needle):
    """Read the child's stream until a line holds `needle` (its progress report)."""
    for line in stream:
        if needle in line:
            return line
    raise AssertionError(f"the child ended without writing {needle!r}")


def test_concurrent_jobs_get_distinct_gpus_and_wait_when_none_is_free(tmp_path):
    first = start(1, tmp_path)
    pair = late = None
    try:
        assert first.stdout.readline().strip() == "0"
        pair = start(2, tmp_path)
        assert pair.stdout.readline().strip() == "1,2"
        late = start(2, tmp_path)  # only GPU 3 is free until `first` exits
        wait_for_line(late.stderr, "waiting for 2 free GPU(s)")
        release(first)
        assert late.stdout.readline().strip() == "0,3"
        release(pair, late)
    finally:
        for p in (first, pair, late):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_a_schedulers_choice_is_kept(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "5"}
    p = start(1, tmp_path, env=env)
    assert p.stdout.readline().strip() == "5"
    release(p)
