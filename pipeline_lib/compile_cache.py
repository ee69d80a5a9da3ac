"""Where torch.compile keeps its compiled kernels, and what happens when that cache is bad.

Why: every dataset shard job compiles the synthesis network; from an empty cache that is 26-30 s,
from a warm one about 10 s. Inductor's default cache is /tmp/torchinductor_<user>, which a reboot
empties and which each SLURM node has to itself, so repeated jobs kept paying the cold compile.
`use_persistent_cache` points Inductor (FX graph cache, AOTAutograd cache and the Triton kernels
it keeps under the same folder) at ~/.cache/genfields/inductor ($XDG_CACHE_HOME honoured), unless
the user has set TORCHINDUCTOR_CACHE_DIR. No key of ours is needed: Inductor keys every entry by
the traced graph, the torch version and its configuration, so changed code or a new torch misses
the cache rather than reusing it. A damaged entry must still never break a job: `compiled` wraps
the first call, and if the compiled module fails it logs the error, turns Inductor's on-disk
caches off and compiles again from scratch (a genuine error then fails the second time too).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def persistent_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genfields" / "inductor"


def use_persistent_cache() -> str:
    """Set TORCHINDUCTOR_CACHE_DIR (read by Inductor when it first compiles) unless already set."""
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        folder = persistent_cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
        except OSError as exc:  # a read-only home: Inductor's default folder still works
            log.warning("cannot use %s for compiled kernels (%s); using Inductor's default", folder, exc)
    return os.environ.get("TORCHINDUCTOR_CACHE_DIR", "")


class compiled:
    """torch.compile(module) whose first call falls back to a cache-free compile on failure."""

    def __init__(self, module, **options):
        self.module, self.options = module, options
        use_persistent_cache()
        self.fn = torch.compile(module, **options)
        self.checked = False

    def __call__(self, *args, **kwargs):
        if self.checked:
            return self.fn(*args, **kwargs)
        try:
            out = self.fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of the cached compile is retried once
            log.warning(
                "torch.compile failed (%s: %s); compiling again without the on-disk caches", type(exc).__name__, exc
            )
            import torch._inductor.config as inductor_config

            # Scoped, not a global change: the first call (where compilation happens) runs cache-free.
            with inductor_config.patch(force_disable_caches=True):
                torch._dynamo.reset()
                self.fn = torch.compile(self.module, **self.options)
                out = self.fn(*args, **kwargs)
        self.checked = True
        return out
