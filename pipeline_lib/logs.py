"""Logging for pipeline scripts: to the rule's log file and to stderr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def configure(log_path=None, level=logging.INFO) -> logging.Logger:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    return logging.getLogger("genfields")
