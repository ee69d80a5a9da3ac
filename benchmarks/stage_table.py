"""One table of every stage's speed: ours, the baseline measured in the same run, the ratio,
% of peak where it applies, and the issue's target.

Every stage benchmark writes its results JSON with a `summary` list built by `summary_row`;
`all_stages.py` runs them and calls `print_table` on what they wrote. Kept apart from the
benchmarks so that each of them can be run alone and still produce its line of the table.

    python benchmarks/stage_table.py RESULTS.json [RESULTS.json ...]   # the table of earlier runs
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def summary_row(
    stage: str,
    ours: str,
    value: float,
    unit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    pct_peak: float | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> dict:
    """One line of the table. `value` and `baseline_value` are rates (higher is better) in `unit`."""
    ratio = value / baseline_value if baseline_value else None
    return {
        "stage": stage,
        "ours": ours,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "pct_peak": pct_peak,
        "target": target,
        "met": met,
    }


def _num(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def format_table(rows: list[dict]) -> str:
    lines = [
        "| stage | ours | value | baseline (same run) | baseline value | x baseline | % of peak | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        digits = 0 if r["value"] >= 100 else 1 if r["value"] >= 10 else 2
        met = {True: "yes", False: "NO", None: "-"}[r.get("met")]
        lines.append(
            f"| {r['stage']} | {r['ours']} | {_num(r['value'], digits)} {r['unit']} | {r.get('baseline') or '-'} | "
            f"{_num(r.get('baseline_value'), digits)} | {_num(r.get('ratio'), 1)} | {_num(r.get('pct_peak'), 1)} | "
            f"{r.get('target') or '-'} | {met} |"
        )
    return "\n".join(lines)


def collect(paths) -> list[dict]:
    """The summary rows of every results JSON that has them, in the order given."""
    rows = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        rows.extend(json.loads(path.read_text()).get("summary", []))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path)
    args = ap.parse_args()
    print(format_table(collect(args.results)))


if __name__ == "__main__":
    main()
