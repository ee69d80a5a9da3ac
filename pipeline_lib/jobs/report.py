"""Rule `report_tables`: tables.md, our Tables 1-3 beside the paper's."""

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
    out_path, evaluations, ablations, reuse, face_size, field_table, variants, labels, configs, final_variant, detectors
) -> None:
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
    )
    inputs = {"evaluations": list(evaluations), "ablations": list(ablations), "reuse": reuse, "face_size": face_size}
    params = {"variants": variants, "labels": labels, "configs": configs, "final_variant": final_variant}
    write_job_provenance(out_path, {**params, "detectors": detectors}, {**inputs, "field_table": field_table})
