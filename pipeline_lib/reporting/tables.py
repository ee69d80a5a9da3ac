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

The FID entry may also be `evaluation.metrics.compute_fid` (or `evaluation.fid.fid_kid`)'s dict ({"fid": x, "num_a", "num_b", ...}).
A bare number stands for {"value": x} / {"mean": x}; a flat {"mean", "sem", "n"} under
"expression" or "pose" counts as the training detector's. Ours is printed as mean ± standard
error where a standard error is given. Paper values come from `paper_reference` and are
printed as the paper prints them (`reporting.paper`, read from the full text). A cell the paper
has no column for (Table 3's FID) says so. Where `compute_fid` gave KID, it is printed beside
FID in the same cell. Optional inputs add sections: `reuse_csv` (our `channel_reuse.csv`) for
Sec. 4.2.1's named channels, `face_size` (a `face_size_summary` dict, a {dataset: summary} dict
or the JSON path) for Sec. 4.2.2, `field_table_csv` (our `generative_fields/table.csv`) for
Table 3's generative-field column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

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
from pipeline_lib.reporting.paper_sections import (
    face_size_section,
    largest_field_below,
    named_channels_section,
    read_field_table,
)

MISSING = "—"
NOT_IN_PAPER = "not reported by the paper"  # a column the paper's table does not have
DECIMALS = {"fid": 2, "identity": 3, "expression": 4, "pose": 2}
PAPER_DECIMALS = {"fid": 2, "identity": 2, "expression": 3, "pose": 2}  # as Tables 1-3 print them
DETECTOR_METRICS = ("expression", "pose")
DEFAULT_FINAL_VARIANT = "euler"


# ----------------------------------------------------------------------------------------------
# Reading a metrics dict


def _number(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v  # NaN counts as missing


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


def format_paper(value, name: str | None = None) -> str:
    """A paper value with the decimals the paper prints (0.20, 8.90), or NOT_IN_PAPER for a column
    its table does not have."""
    v = _number(value)
    if v is None:
        return NOT_IN_PAPER
    return f"{v:.{PAPER_DECIMALS[name]}f}" if name in PAPER_DECIMALS else f"{v:g}"


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
            cells.append(format_ours(metric_stats(ours, name), name) + (_kid(ours) if name == "fid" else ""))
        cells.append(format_paper(paper.get(name), name))
    return cells


def _kid(ours: Mapping | None) -> str:
    """ "; KID x ± std" where our FID entry carries `compute_fid`'s KID, else ""."""
    fid = ours.get("fid") if isinstance(ours, Mapping) else None
    kid = _number(fid.get("kid")) if isinstance(fid, Mapping) else None
    if kid is None:
        return ""
    std = _number(fid.get("kid_std"))
    return f"; KID {kid:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _sample_sizes(label: str, ours: Mapping | None, detectors: Sequence[str]) -> str | None:
    """One line of n's for a row, so that a reader can judge the error bars."""
    if not isinstance(ours, Mapping):
        return None
    parts = []
    fid = ours.get("fid")
    if metric_stats(ours, "fid") is not None and isinstance(fid, Mapping):
        a, b = fid.get("num_a"), fid.get("num_b")
        parts.append(f"FID {a if a is not None else '?'} edited vs {b if b is not None else '?'} real faces")
        if fid.get("kid_subset_size") is not None:
            parts.append(f"KID {fid.get('kid_subsets', '?')} subsets of {fid['kid_subset_size']}")
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


def _table3_key(key: str, spec) -> tuple[str | None, tuple[str, str] | None]:
    """(the paper's Table 3 key "convA-convB", layers) of one of our ablation configurations."""
    layers = _layer_range(key, spec)
    return (f"{layers[0]}-{layers[1]}" if layers else None), layers


def _our_fields(field_table_csv, fields: Mapping[str, int] | None) -> tuple[dict[str, int], str]:
    if field_table_csv is not None:
        rows = read_field_table(field_table_csv)
        from pipeline_lib.generative_fields import field_of_row  # either family's table

        fields = {k: field_of_row(r) for k, r in rows.items()}
        eq1 = any(r.get("gf_eq1") not in (None, "") for r in rows.values())
        method = "Eq. 1" if eq1 else "StyleGAN3's analytic support (no Eq. 1 for that family)"
        return {k: v for k, v in fields.items() if v is not None}, f"ours, {method} (generative_fields/table.csv)"
    if fields is not None:
        return dict(fields), "as given to the report"
    return dict(PAPER256_GENERATIVE_FIELDS), "the paper's appendix Table 1 (no table.csv given)"


def _largest(layers, fields) -> int | None:
    if layers is None:
        return None
    a, b = int(layers[0].removeprefix("conv")), int(layers[1].removeprefix("conv"))
    got = [fields.get(f"conv{i}") for i in range(min(a, b), max(a, b) + 1)]
    return None if any(g is None for g in got) else max(got)


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
    reuse_csv=None,
    face_size=None,
    field_table_csv=None,
    layer_table=None,
    real_edits: Mapping | None = None,
) -> str:
    """The whole `tables.md` as a string (see the module docstring for the dict shapes).

    Table 1: the paper's prior methods (paper-only rows), then "Ours" = `final_variant`
    (default "euler", else the last variant). Table 2: one row per variant, keyed by our
    variant name (`variant_labels`' keys, then the paper's four, then any other in
    `eval_metrics`), with the paper's row for that variant. Table 3: one row per layer range;
    our configuration is matched to the paper's by its range (`ablation_ranges[key]` or a
    "convA-convB" key), never by its name. `fields` / `field_table_csv` give our generative
    fields (default: the paper's appendix Table 1). `real_edits` (the `edit_real_faces` stage's
    metrics) adds Table 1's extra row: the final model editing projected real faces, ours only.
    """
    eval_metrics = dict(eval_metrics or {})
    ablation_metrics = dict(ablation_metrics or {})
    fields, field_source = _our_fields(field_table_csv, fields)
    variant_keys = _ordered(list(variant_labels or {}) + list(PAPER_TABLE2), eval_metrics)
    labels = {k: (variant_labels or {}).get(k) or k for k in variant_keys}
    if final_variant is None:
        final_variant = (
            DEFAULT_FINAL_VARIANT if DEFAULT_FINAL_VARIANT in eval_metrics else next(reversed(eval_metrics), None)
        )

    out = [
        "# Tables: our reproduction beside the paper",
        "",
        f"Paper: {PAPER_CITATION} {PAPER_URL}",
        "",
        (
            "Ours: mean ± standard error over the evaluation set where a standard error is given; "
            f"{MISSING} where we have no number (or do not run the method). Paper: the value as printed. "
            f"Expression and pose are measured twice: with the landmark detector the losses use ({detectors[0]}) "
            f"and with an independent one ({detectors[1]}), since an editor can learn to satisfy the detector "
            "it is trained against. FID from 1,000 edits is biased upwards; KID (unbiased) is printed beside ours."
        ),
        *[f"\n{n}" for n in notes],
        "",
        "## Table 1: comparison with prior work",
        "",
    ]
    t1 = [([m["label"]], None, m, m["label"]) for k, m in PAPER_TABLE1.items() if k != "ours"]
    ours_label = PAPER_TABLE1["ours"]["label"]
    if final_variant is not None:
        ours_label = f"{ours_label}; our variant `{final_variant}`"
    t1.append(([ours_label], eval_metrics.get(final_variant), PAPER_TABLE1["ours"], ours_label))
    if real_edits is not None:
        real_label = f"{ours_label}, real identities (extra row, ours only: the paper edits generated faces)"
        t1.append(([real_label], real_edits, None, "real identities"))
    out += _table(t1, ["Method"], detectors)
    out += ["", f"Paper values: {PAPER_TABLE1_SOURCE}. LORD, FSGAN and IDDISEN are the paper's numbers only."]
    if real_edits is not None:
        out += [
            "",
            (
                f"Real identities: {real_edits.get('identity_source', '?')}, projected (run "
                f"{real_edits.get('projection_run', '?')}) and edited by `{real_edits.get('model', '?')}` with "
                f"attribute faces {real_edits.get('attribute_source', '?')}; {real_edits.get('num_pairs', '?')} pairs."
            ),
        ]
    out += [""]

    out += ["## Table 2: ablation of the variants", ""]
    t2 = []
    for k in variant_keys:
        paper = PAPER_TABLE2.get(k)
        paper_name = paper["label"] if paper else "— (no such row in the paper)"
        t2.append(([paper_name, f"{labels[k]} (`{k}`)"], eval_metrics.get(k), paper, labels[k]))
    out += _table(t2, ["Paper row", "Our variant"], detectors)
    out += ["", f"Paper values: {PAPER_TABLE2_SOURCE}.", ""]

    out += ["## Table 3: generative-field ablation (dS kept only on a range of conv layers)", ""]
    ours_by_range: dict[str, tuple[str, tuple[str, str] | None]] = {}
    for k in _ordered(ablation_ranges or {}, ablation_metrics):
        rkey, layers = _table3_key(k, (ablation_ranges or {}).get(k))
        ours_by_range[rkey or k] = (k, layers)
    t3 = []
    for rkey in _ordered(PAPER_TABLE3, ours_by_range):
        k, layers = ours_by_range.get(rkey, (None, PAPER_TABLE3.get(rkey, {}).get("layers")))
        paper = PAPER_TABLE3.get(rkey)
        kept = f"{layers[0]}–{layers[1]}" if layers else rkey
        index = (paper["label"] if paper else "—") + (f" (ours: `{k}`)" if k and k != rkey else "")
        gf_paper = "({}, {}) px".format(*paper["generative_fields"]) if paper else "— (not in the paper)"
        lead = [index, kept, _field_range(layers, fields), gf_paper]
        if face_size is not None:
            lead.append(largest_field_below(face_size, _largest(layers, fields)))
        t3.append((lead, ablation_metrics.get(k) if k else None, paper, kept))
    lead_cols = ["Index", "dS kept on", "generative field (ours)", "GFs (paper)"]
    if face_size is not None:
        lead_cols.append("largest field < face size (ours)")
    out += _table(t3, lead_cols, detectors)
    out += [
        "",
        (
            f"Paper values: {PAPER_TABLE3_SOURCE}. Generative fields of ours (one side, largest → smallest of the "
            f"range): {field_source}; the paper's as its Table 3 prints them, (smallest, largest)."
        ),
        "",
    ]
    out += named_channels_section(reuse_csv, layer_table)
    out += face_size_section(face_size)
    return "\n".join(out)


def write_tables(path, eval_metrics, ablation_metrics, variant_labels=None, ablation_ranges=None, **kwargs) -> str:
    """Write `tables.md` atomically; returns its text. Keyword arguments are `render_tables`'s
    (new and optional: `reuse_csv`, `face_size`, `field_table_csv`, `layer_table`)."""
    text = render_tables(eval_metrics, ablation_metrics, variant_labels, ablation_ranges, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return text
