"""Rule `report_tables`: tables.md, our Tables 1-3 beside the paper's (Table 1 with the real-face row)."""

from __future__ import annotations

import json

from pipeline_lib.provenance import write_job_provenance
from pipeline_lib.reporting.tables import write_tables


def _read(paths, names) -> dict:
    out = {}
    for name, path in zip(names, paths):
        with open(path) as fh:
            out[name] = json.load(fh)
    return out


def run(
    out_path, evaluations, ablations, reuse, face_size, field_table, variants, labels, configs, final_variant, detectors,
    real_edits=None,
) -> None:  # fmt: skip
    """`real_edits`: the real-face edits' metrics.json, for Table 1's extra row (None: no row)."""
    eval_metrics = _read(evaluations, variants)
    ablation_metrics = _read(ablations, list(configs))
    sources = sorted({m.get("attribute_source", "?") for m in [*eval_metrics.values(), *ablation_metrics.values()]})
    write_tables(
        out_path,
        eval_metrics,
        ablation_metrics,
        variant_labels=labels,
        ablation_ranges=configs,
        final_variant=final_variant,
        detectors=detectors,
        notes=[f"Attribute faces: {', '.join(sources)}."],
        reuse_csv=reuse,
        face_size=face_size,
        field_table_csv=field_table,
        real_edits=_read([real_edits], ["real_edits"])["real_edits"] if real_edits else None,
    )
    inputs = {"evaluations": list(evaluations), "ablations": list(ablations), "reuse": reuse, "face_size": face_size,
              "real_edits": real_edits}  # fmt: skip
    params = {"variants": variants, "labels": labels, "configs": configs, "final_variant": final_variant}
    write_job_provenance(out_path, {**params, "detectors": detectors}, {**inputs, "field_table": field_table})
