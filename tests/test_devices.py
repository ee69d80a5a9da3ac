"""Concurrent GPU jobs on one workstation get different GPUs (lock files), and a scheduler's
choice (CUDA_VISIBLE_DEVICES) is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CLAIM = """
import os, sys, time
sys.path.insert(0, {repo!r})
from pipeline_lib.devices import claim_gpus
got = claim_gpus({n}, lock_dir={locks!r}, poll_seconds=0.05, total=4)
print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
time.sleep({hold})
"""


def start(n, locks, hold, env=None):
    code = CLAIM.format(repo=str(REPO), n=n, locks=str(locks), hold=hold)
    env = {k: v for k, v in (env or os.environ).items() if k != "CUDA_VISIBLE_DEVICES"} if env is None else env
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)


def test_concurrent_jobs_get_distinct_gpus_and_wait_when_none_is_free(tmp_path):
    first = start(1, tmp_path, hold=3)
    assert first.stdout.readline().strip() == "0"
    pair = start(2, tmp_path, hold=3)
    assert pair.stdout.readline().strip() == "1,2"
    t0 = time.time()
    late = start(2, tmp_path, hold=0)  # only GPU 3 is free until `first` exits
    assert late.stdout.readline().strip() == "0,3"
    assert time.time() - t0 > 1.0, "it must have waited for a GPU to be released"
    for p in (first, pair, late):
        p.wait()


def test_a_schedulers_choice_is_kept(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "5"}
    p = start(1, tmp_path, hold=0, env=env)
    assert p.stdout.readline().strip() == "5"
    p.wait()
