"""`tables.md`: our numbers beside the paper's Tables 1-3, so a reader sees at once where the
reproduction agrees and where it does not.

Input: one metrics dict per trained variant (Tables 1-2) and per ablation configuration
(Table 3). Every key is optional; a missing or None entry is printed as "—":

    {
        "fid": {"value": 12.3, "num_a": 1000, "num_b": 70000},   # edited faces vs real faces
        "identity": {"mean": 0.81, "sem": 0.004, "n": 1000},    # ArcFace cosine, id image vs edit
        "expression": {                                          # attribute image vs edit
            "train": {"mean": ..., "sem": ..., "n": ...},        # detector of the loss (3DDFA_V2)
            "eval": {"mean": ..., "sem": ..., "n": ...},         # independent detector (FAN)
        },
        "pose": {"train": {...}, "eval": {...}},                 # as expression
    }

The FID entry may also be `edit_metrics.compute_fid`'s dict ({"fid": x, "num_a", "num_b", ...}).
A bare number stands for {"value": x} / {"mean": x}; a flat {"mean", "sem", "n"} under
"expression" or "pose" counts as the training detector's. Ours is printed as mean ± standard
error where a standard error is given. Paper values come from `paper_reference` and are
printed as the paper prints them; one we have not read prints "not in our copy of the paper".
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from pipeline_lib.atomic import atomic_path
from pipeline_lib.reporting.paper import (
    PAPER256_GENERATIVE_FIELDS,
    PAPER_CITATION,
    PAPER_METRICS,
    PAPER_TABLE1,
    PAPER_TABLE1_SOURCE,
    PAPER_TABLE2,
    PAPER_TABLE2_SOURCE,
    PAPER_TABLE3,
    PAPER_TABLE3_SOURCE,
    PAPER_URL,
)

MISSING = "—"
NOT_IN_PAPER = "not in our copy of the paper"
DECIMALS = {"fid": 2, "identity": 3, "expression": 4, "pose": 2}
DETECTOR_METRICS = ("expression", "pose")
DEFAULT_FINAL_VARIANT = "euler"


# ----------------------------------------------------------------------------------------------
# Reading a metrics dict


def _number(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # NaN counts as missing


def _stats(entry) -> dict | None:
    """{"mean", "sem", "n"} (or a bare number, or {"value"}) -> dict with a float mean, else None."""
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        mean = _number(entry)
        return None if mean is None else {"mean": mean, "sem": None, "n": None}
    mean = _number(next((entry[k] for k in ("mean", "value", "fid") if entry.get(k) is not None), None))
    if mean is None:
        return None
    return {"mean": mean, "sem": _number(entry.get("sem")), "n": entry.get("n", entry.get("num_a"))}


def metric_stats(metrics: Mapping | None, name: str, detector: str | None = None) -> dict | None:
    """The stats of one cell of our side of a table, or None when absent."""
    if not isinstance(metrics, Mapping):
        return None
    entry = metrics.get(name)
    if name in DETECTOR_METRICS:
        if isinstance(entry, Mapping) and ("train" in entry or "eval" in entry):
            entry = entry.get(detector or "train")
        elif detector not in (None, "train"):
            entry = None  # a flat entry is the training detector's
    return _stats(entry)


def format_ours(stats: dict | None, name: str) -> str:
    if stats is None:
        return MISSING
    d = DECIMALS.get(name, 3)
    if stats["sem"] is None:
        return f"{stats['mean']:.{d}f}"
    return f"{stats['mean']:.{d}f} ± {stats['sem']:.{d}f}"


def format_paper(value) -> str:
    v = _number(value)
    return NOT_IN_PAPER if v is None else f"{v:g}"


# ----------------------------------------------------------------------------------------------
# Markdown


def _escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _row(cells: Iterable) -> str:
    return "| " + " | ".join(_escape(c) for c in cells) + " |"


def _header(lead: Sequence[str], detectors: Sequence[str]) -> list[str]:
    cols = list(lead)
    for name, meta in PAPER_METRICS.items():
        arrow = "↑" if meta["higher_is_better"] else "↓"
        label = f"{meta['label']} {arrow}"
        if name in DETECTOR_METRICS:
            cols += [f"{label} ours ({detectors[0]})", f"{label} ours ({detectors[1]})", f"{label} paper"]
        else:
            cols += [f"{label} ours", f"{label} paper"]
    return [_row(cols), _row(["---"] * len(cols))]


def _metric_cells(ours: Mapping | None, paper: Mapping | None) -> list[str]:
    paper = paper or {}
    cells = []
    for name in PAPER_METRICS:
        if name in DETECTOR_METRICS:
            cells += [
                format_ours(metric_stats(ours, name, "train"), name),
                format_ours(metric_stats(ours, name, "eval"), name),
            ]
        else:
            cells.append(format_ours(metric_stats(ours, name), name))
        cells.append(format_paper(paper.get(name)))
    return cells


def _sample_sizes(label: str, ours: Mapping | None, detectors: Sequence[str]) -> str | None:
    """One line of n's for a row, so that a reader can judge the error bars."""
    if not isinstance(ours, Mapping):
        return None
    parts = []
    fid = ours.get("fid")
    if metric_stats(ours, "fid") is not None and isinstance(fid, Mapping):
        a, b = fid.get("num_a"), fid.get("num_b")
        parts.append(f"FID {a if a is not None else '?'} edited vs {b if b is not None else '?'} real faces")
    for name in PAPER_METRICS:
        if name == "fid":
            continue
        for det_key, det_name in (
            ((None, None),) if name not in DETECTOR_METRICS else (("train", detectors[0]), ("eval", detectors[1]))
        ):
            s = metric_stats(ours, name, det_key)
            if s is not None and s["n"] is not None:
                what = PAPER_METRICS[name]["label"] + (f" ({det_name})" if det_name else "")
                parts.append(f"{what} n={s['n']}")
    return f"- {label}: " + "; ".join(parts) if parts else None


def _table(rows: list[tuple[list[str], Mapping | None, Mapping | None, str]], lead: Sequence[str],
           detectors: Sequence[str]) -> list[str]:  # fmt: skip
    lines = _header(lead, detectors)
    sizes = []
    for lead_cells, ours, paper, label in rows:
        lines.append(_row(lead_cells + _metric_cells(ours, paper)))
        line = _sample_sizes(label, ours, detectors)
        if line:
            sizes.append(line)
    if sizes:
        lines += ["", "Sample sizes (ours):", *sizes]
    return lines


def _layer_range(key: str, spec) -> tuple[str, str] | None:
    """(first, last) conv layer of an ablation from `ablation_ranges[key]` or from a "convA-convB" key."""
    if isinstance(spec, str):
        spec = spec.split("-")
    if spec is not None and len(spec) >= 1:
        spec = list(spec)
        return str(spec[0]), str(spec[-1])
    parts = key.split("-")
    if len(parts) == 2 and all(p.startswith("conv") for p in parts):
        return parts[0], parts[1]
    return None


def _field_range(layers: tuple[str, str] | None, fields: Mapping[str, int]) -> str:
    if layers is None or layers[0] not in fields or layers[1] not in fields:
        return MISSING
    a, b = fields[layers[0]], fields[layers[1]]
    return f"{a} px" if a == b else f"{max(a, b)} → {min(a, b)} px"


def _ordered(preferred: Iterable[str], present: Iterable[str]) -> list[str]:
    keys = list(dict.fromkeys(preferred))
    return keys + [k for k in present if k not in keys]


def render_tables(
    eval_metrics: Mapping[str, Mapping] | None,
    ablation_metrics: Mapping[str, Mapping] | None,
    variant_labels: Mapping[str, str] | None = None,
    ablation_ranges: Mapping[str, Sequence[str] | str] | None = None,
    *,
    final_variant: str | None = None,
    fields: Mapping[str, int] | None = None,
    detectors: Sequence[str] = ("3DDFA_V2", "FAN"),
    notes: Sequence[str] = (),
) -> str:
    """The whole `tables.md` as a string (see the module docstring for the dict shapes).

    Table 2's rows are `variant_labels`' keys in order (default: the paper's four variants),
    then any other variant in `eval_metrics`; Table 3's are `ablation_ranges`' keys (default:
    the paper's five ranges), then any other configuration. Table 1's "ours" row is
    `final_variant` (default "euler", else the last variant). `fields` gives each conv layer's
    generative field for Table 3 (default: the paper's appendix Table 1).
    """
    eval_metrics = dict(eval_metrics or {})
    ablation_metrics = dict(ablation_metrics or {})
    field_source = "the paper's appendix Table 1" if fields is None else "as given to the report"
    fields = dict(fields or PAPER256_GENERATIVE_FIELDS)
    variant_keys = _ordered(variant_labels if variant_labels else PAPER_TABLE2, eval_metrics)
    labels = {k: (variant_labels or {}).get(k) or PAPER_TABLE2.get(k, {}).get("label") or k for k in variant_keys}
    if final_variant is None:
        final_variant = (
            DEFAULT_FINAL_VARIANT if DEFAULT_FINAL_VARIANT in eval_metrics else next(reversed(eval_metrics), None)
        )

    out = [
        "# Tables: our reproduction beside the paper",
        "",
        f"Paper: {PAPER_CITATION} {PAPER_URL}",
        "",
        "Ours: mean ± standard error over the evaluation set where a standard error is given; "
        f"{MISSING} where we have no number. Paper: the value as printed, or “{NOT_IN_PAPER}”. "
        f"Expression and pose are measured twice: with the landmark detector the losses use ({detectors[0]}) "
        f"and with an independent one ({detectors[1]}), since an editor can learn to satisfy the detector "
        "it is trained against.",
        *[f"\n{n}" for n in notes],
        "",
        "## Table 1: comparison with prior work",
        "",
    ]
    t1 = [
        ([meta.get("label", key)], None, meta, meta.get("label", key))
        for key, meta in PAPER_TABLE1.items()
        if key != "ours"
    ]
    ours_label = PAPER_TABLE1.get("ours", {}).get("label", "Ours")
    if final_variant is not None:
        ours_label = f"{ours_label}; our variant `{final_variant}`"
    t1.append(([ours_label], eval_metrics.get(final_variant), PAPER_TABLE1.get("ours"), ours_label))
    out += _table(t1, ["Method"], detectors)
    out += ["", f"Paper values: {PAPER_TABLE1_SOURCE}. The other methods' rows: {NOT_IN_PAPER}.", ""]

    out += ["## Table 2: ablation of the variants", ""]
    t2 = [([labels[k]], eval_metrics.get(k), PAPER_TABLE2.get(k), labels[k]) for k in variant_keys]
    out += _table(t2, ["Variant"], detectors)
    out += ["", f"Paper values: {PAPER_TABLE2_SOURCE}.", ""]

    out += ["## Table 3: generative-field ablation (dS kept only on a range of conv layers)", ""]
    ablation_keys = _ordered(ablation_ranges if ablation_ranges else PAPER_TABLE3, ablation_metrics)
    t3 = []
    for k in ablation_keys:
        spec = (ablation_ranges or {}).get(k) or PAPER_TABLE3.get(k, {}).get("layers")
        layers = _layer_range(k, spec)
        kept = f"{layers[0]}–{layers[1]}" if layers else k
        t3.append(([kept, _field_range(layers, fields)], ablation_metrics.get(k), PAPER_TABLE3.get(k), kept))
    out += _table(t3, ["dS kept on", "generative field"], detectors)
    out += [
        "",
        f"Paper values: {PAPER_TABLE3_SOURCE}. Generative fields (one side, conv layers of the range): {field_source}.",
        "",
    ]
    return "\n".join(out)


def write_tables(path, eval_metrics, ablation_metrics, variant_labels=None, ablation_ranges=None, **kwargs) -> str:
    """Write `tables.md` atomically; returns its text."""
    text = render_tables(eval_metrics, ablation_metrics, variant_labels, ablation_ranges, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return text
