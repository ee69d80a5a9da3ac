"""The parsing every section shares: `Section.parse` casts the validated values of exactly the
fields a dataclass names, and refuses a missing key (config.yaml holds every default)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import yaml

CONFIG_FILE = Path(__file__).resolve().parents[2] / "config.yaml"


def _convert(value, annotation: str, where: str):
    """Cast one validated value to its field's type (YAML gives lists and ints for floats)."""
    if value is None and annotation.endswith("| None"):
        return None
    annotation = annotation.removesuffix(" | None")
    if annotation.startswith("tuple"):
        return tuple(value)
    if annotation == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"config {where} is {value}: it must be a finite number")
        return value
    if annotation == "int":
        return int(value)
    if annotation == "bool":
        return bool(value)
    if annotation == "str":
        return str(value)
    return value


class Section:
    """Base of the section dataclasses: `parse` takes exactly the keys the dataclass names."""

    SECTION = ""

    @classmethod
    def parse(cls, raw: dict, where: str | None = None):
        where = where or cls.SECTION
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        missing = [name for name in hints if name not in raw]
        if missing:
            raise KeyError(f"config {where} lacks {missing}; config.yaml holds every default")
        values = {name: _convert(raw[name], str(hints[name]), f"{where}.{name}") for name in hints}
        return cls(**values)


def load_config(path=CONFIG_FILE) -> dict:
    """config.yaml as a dict (tests and benchmarks; the workflow has Snakemake's merged config)."""
    with open(path) as fh:
        return yaml.safe_load(fh)
