"""Rules `download_weights` (a registry file, verified) and `random_weights` (demo stand-ins)."""

from __future__ import annotations

import logging

from pipeline_lib.encoders.random_weights import random_weights_file
from pipeline_lib.weights.registry import REGISTRY, download

log = logging.getLogger(__name__)


def fetch(name: str, out_path) -> None:
    download(REGISTRY[name], out_path)


def random_stand_in(name: str, out_path) -> None:
    random_weights_file(name, out_path)
    log.info("wrote a random stand-in for %s at %s", name, out_path)
