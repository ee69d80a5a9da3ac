"""The one-line summary of a benchmark's figure against its target, shared by every stage
benchmark and by benchmarks/all_stages.py, which prints them all in one table.

Each benchmark adds `"summary_rows": [summary_row(...), ...]` to its `--out` JSON, so the
knowledge of which of its figures is "ours", which is the baseline measured in the same run and
which target of issues 14/16 applies stays in that benchmark. A row is a plain dict:

    stage     what was measured (str)
    ours      our figure (number, str, or None when not reached)
    baseline  the figure it is compared with, measured in the same run (number, str or None)
    unit      of both (str)
    ratio     how many times better ours is than the baseline (baseline/ours for times), or None
    pct_peak  ours as a % of the device's measured peak, where the benchmark computes it, or None
    target    the issue's target, as printed ('>= 1,500 img/s'), or None
    met       True/False against the target; None when there is no target or no figure
    note      anything needed to read the row (the path measured, its fidelity, why it is missing)

Rows written by hand with the same keys (evaluation_benchmark.py does) are read the same way;
`ratio` may then be left out (all_stages computes it, see `fill_ratio`).
"""

from __future__ import annotations

import math
import numbers

TIME_UNITS = ("s", "ms", "min", "h", "s/image")  # lower is better: the ratio is baseline / ours


def _number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def fmt_number(x, unit: str = "") -> str:
    """`x` with as many digits as a benchmark figure deserves (1,061; 57.5; 0.090)."""
    if not _number(x):
        return "-" if x is None else str(x)
    a = abs(x)
    text = f"{x:,.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}" if a >= 0.1 else f"{x:.3g}"
    return f"{text} {unit}".strip() if unit else text


def speedup(ours, baseline, unit: str = "") -> float | None:
    """How many times better `ours` is: ours/baseline for rates, baseline/ours for times."""
    if not (_number(ours) and _number(baseline)) or ours <= 0 or baseline <= 0:
        return None
    return baseline / ours if unit in TIME_UNITS else ours / baseline


class Target:
    """`op` ('>=' or '<=') `threshold` on `on` ('ours' or 'ratio'): '>= 50x' is Target('>=', 50, 'x', 'ratio')."""

    def __init__(self, op: str, threshold: float, unit: str = "", on: str = "ours"):
        if op not in (">=", "<=") or on not in ("ours", "ratio"):
            raise ValueError(f"bad target {op!r} on {on!r}")
        self.op, self.threshold, self.unit, self.on = op, threshold, unit, on

    def __str__(self) -> str:
        value = f"{self.threshold:,}" if self.threshold >= 1000 else f"{self.threshold:g}"
        return f"{self.op} {value}{'x' if self.on == 'ratio' else ' ' + self.unit}".rstrip()

    def met(self, ours, ratio) -> bool | None:
        value = ratio if self.on == "ratio" else ours
        if not _number(value):
            return None
        return value >= self.threshold if self.op == ">=" else value <= self.threshold


def summary_row(
    stage: str,
    ours,
    baseline=None,
    unit: str = "",
    target: Target | str | None = None,
    note: str = "",
    pct_peak: float | None = None,
    met: bool | None = None,
    ratio: bool = True,
) -> dict:
    """One row (see the module docstring). `met` overrides the target's verdict: a figure that
    was not reached can still be known to miss its target (a compile killed after 94 s > 60 s);
    a target given as text (a criterion that is not a threshold) is judged by `met` alone.
    `ratio=False` for figures whose quotient means nothing (dB, pixels)."""
    ratio = speedup(ours, baseline, unit) if ratio else None
    verdict = target.met(ours, ratio) if isinstance(target, Target) else None
    return {
        "stage": stage,
        "ours": ours if not _number(ours) else float(ours),
        "baseline": baseline if not _number(baseline) else float(baseline),
        "unit": unit,
        "ratio": ratio,
        "pct_peak": float(pct_peak) if _number(pct_peak) else None,
        "target": str(target) if target is not None else None,
        "met": verdict if met is None else met,
        "note": note,
    }


def fill_ratio(row: dict) -> dict:
    """A hand-written row with the common keys filled in (ratio computed where it is left out)."""
    out = {"ours": None, "baseline": None, "unit": "", "pct_peak": None, "target": None, "met": None, "note": ""}
    out.update(row)
    out["stage"] = str(out.get("stage", "?"))
    if "ratio" not in row:
        out["ratio"] = speedup(out["ours"], out["baseline"], out["unit"] or "")
    return out
