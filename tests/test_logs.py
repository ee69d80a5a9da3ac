"""A failed job's rule log holds its traceback, not only stderr (a SLURM user reads the log)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, threading
sys.path.insert(0, {repo!r})
from pipeline_lib.logs import configure
log = configure({log!r})
log.info("started")
def worker():
    raise ValueError("boom in a thread")
t = threading.Thread(target=worker, name="helper")
t.start()
t.join()
def deep():
    raise RuntimeError("the job's own error")
deep()
"""


def test_uncaught_exception_and_its_traceback_reach_the_rule_log(tmp_path):
    log = tmp_path / "logs" / "rule.log"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(repo=str(REPO), log=str(log))],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1
    text = log.read_text()
    assert "started" in text
    assert "Traceback (most recent call last)" in text
    assert "in deep" in text and "RuntimeError: the job's own error" in text
    assert "in thread helper" in text and "ValueError: boom in a thread" in text
    # the default handling still happens: the traceback is on stderr too, once
    assert proc.stderr.count("RuntimeError: the job's own error") == 1
