"""The parts of `tables.md` that are not Tables 1-3: Sec. 4.2.1's named channels (where they
fall in S and whether our editor reuses them) and Sec. 4.2.2's face size.

Kept apart from `tables.py` so that each stays readable; `render_tables` calls these.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from pipeline_lib.reporting.paper import (
    PAPER_FACE_SIZE,
    PAPER_FACE_SIZE_SOURCE,
    PAPER_SPARSITY,
    PAPER_SPARSITY_SOURCE,
)


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_reuse(reuse_csv) -> dict[int, dict]:
    """Our `channel_reuse.csv` (`sparsity.REUSE_CSV_COLUMNS`) -> {0-based column of S: row}."""
    return {int(row["s_column"]): row for row in _read_csv(reuse_csv)}


def read_field_table(field_table_csv) -> dict[str, dict]:
    """Our `generative_fields/table.csv` -> {conv layer: row}."""
    return {row["layer"]: row for row in _read_csv(field_table_csv)}


def named_channels_section(reuse_csv=None, layer_table=None) -> list[str]:
    """Sec. 4.2.1: each channel the paper names (1-based dS_d) placed in S (conv layer, channel,
    generative field) with the paper256 layer table, and, given our reuse CSV, our reuse rate."""
    from pipeline_lib.generator.layers import build_layer_table, channel_of
    from pipeline_lib.generator.stylegan2 import GeneratorConfig

    table = layer_table if layer_table is not None else build_layer_table(GeneratorConfig())
    reuse = read_reuse(reuse_csv) if reuse_csv is not None and Path(reuse_csv).is_file() else None
    p = PAPER_SPARSITY
    out = [
        "## Sec. 4.2.1: channels the paper names as reused",
        "",
        f"Paper ({PAPER_SPARSITY_SOURCE}): {p['tests']} tests, top {p['top_k']} |dS| channels each; their union "
        f"T_u has {p['union_size']} channels"
        + (f"; ours has {len(reuse)}." if reuse is not None else "; ours: no reuse CSV given."),
        "The paper indexes S from 1 (Sec. 3.1), so dS_d is column d − 1 of our S.",
        "",
        (
            "| paper channel | S column (0-based) | conv layer | channel in layer | generative field (Eq. 1) | in our T_u "
            "| our reuse rate |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in p["named_channels_1based"]:
        spec, channel = channel_of(table, d - 1)
        if reuse is None:
            in_ours, rate = "no reuse CSV given", "—"
        elif d - 1 in reuse:
            in_ours, rate = "yes", f"{float(reuse[d - 1]['reuse_rate']):.2f}"
        else:
            in_ours, rate = "no", "0"
        out.append(
            f"| ΔS_{d} | {d - 1} | {spec.paper_name} ({spec.stylespace_name}) | {channel} | "
            f"{spec.generative_field} px | {in_ours} | {rate} |"
        )
    return out + [""]


def _summaries(face_size) -> dict[str, Mapping]:
    if face_size is None:
        return {}
    if isinstance(face_size, (str, Path)):
        import json

        face_size = json.loads(Path(face_size).read_text())
    if "mean" in face_size:
        return {face_size.get("dataset") or "ours": face_size}
    return dict(face_size)


def face_size_section(face_size=None) -> list[str]:
    """Sec. 4.2.2: the paper's 141.68 px beside our `face_size_summary`(s)."""
    out = ["## Sec. 4.2.2: face size", "", f"Paper: {PAPER_FACE_SIZE:.2f} px ({PAPER_FACE_SIZE_SOURCE})."]
    summaries = _summaries(face_size)
    if not summaries:
        return out + ["Ours: not measured (no face-size summary given).", ""]
    for name, s in summaries.items():
        det = f", {s['detector']}" if s.get("detector") else ""
        out.append(f"Ours ({name}{det}): {s['mean']:.2f} ± {s['std']:.2f} px (mean ± std, n={s['n']}).")
        below = [f"{r['config']} ({r['layers']}, largest {r['largest_field']} px)" for r in s.get("table3", [])
                 if r.get("largest_below_face")]  # fmt: skip
        if s.get("table3"):
            out.append(
                "Table 3 configurations whose largest generative field is below it: "
                + (", ".join(below) or "none")
                + "."
            )
    return out + [""]


def largest_field_below(face_size, largest_field: int | None) -> str:
    """Table 3's mark: is a configuration's largest field below the measured face size?"""
    summaries = _summaries(face_size)
    if not summaries or largest_field is None:
        return "—"
    mean = next(iter(summaries.values()))["mean"]
    return "yes" if largest_field < mean else "no"
