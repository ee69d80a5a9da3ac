"""Checks of config.yaml that its JSON schema cannot express.

YAML's `.nan` and `.inf` load as float nan/inf, and JSON schema's `type: number` accepts both;
nan even passes every `minimum`/`maximum` (each comparison with nan is false). A NaN
`truncation_psi` then writes complete-looking shards of NaN styles, so every number is checked
here, by key path, before any job is planned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def _non_finite(value, path: str):
    """(key path, value) of every NaN or infinite number under `value`."""
    if isinstance(value, bool):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _non_finite(item, f"{path}[{index}]")


def check_finite(config: Mapping) -> None:
    """Raise ValueError naming the key path of every NaN or infinite number in `config`."""
    bad = list(_non_finite(config, ""))
    if bad:
        listed = ", ".join(f"{path} = {value}" for path, value in bad)
        raise ValueError(f"config: every number must be finite; found {listed} (check config.yaml and --config)")
