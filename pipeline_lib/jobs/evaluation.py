"""Rules `evaluate_variant` (Tables 1-2), `ablation` (Table 3) and `sparsity` (Figs. 7-8): a
trained M_ref applied to generated identity faces and real attribute faces, measured."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline_lib.atomic import write_json_atomic
from pipeline_lib.devices import resolve_device
from pipeline_lib.editing import AttributeFaces, Editor, Encoders, field_range, layers_mask
from pipeline_lib.encoders import build_encoder
from pipeline_lib.encoders.inference import EncoderRunner
from pipeline_lib.evaluation import sparsity
from pipeline_lib.evaluation.edits import edit_grid_images, evaluate, metrics_record, style_offsets
from pipeline_lib.evaluation.fid import fid_kid, inception_features, read_real, write_real_features
from pipeline_lib.generator import load_generator
from pipeline_lib.mref import load_mapper
from pipeline_lib.provenance import write_job_provenance
from pipeline_lib.reporting.figures import edit_grid
from pipeline_lib.settings import EncoderSettings, EvaluationSettings, SparsitySettings

log = logging.getLogger(__name__)


def build_parts(model, faces, annotations, generator, files: dict, encoders: dict, ev, encoder_precision: dict, device):
    """The generator, an Editor of the trained model, and every encoder, on `device`.

    On a GPU the edited faces are synthesised in `evaluation.precision` and the encoders run as the
    annotation stage runs them (channels-last, each in its `annotation.precision`), compiled with
    `evaluation.compile`; a CPU runs the float32 reference, eager (config.yaml `evaluation`)."""
    enc = EncoderSettings.parse(encoders)
    torch_device = resolve_device(device)
    fast = torch_device.type == "cuda"
    G = load_generator(generator, device=torch_device)
    mapper, meta = load_mapper(model, torch_device)
    editor = Editor(
        G, mapper, meta["settings"]["input_features"], faces, annotations, torch_device,
        precision=ev.synthesis_on(torch_device.type), channels_last=fast, compile=fast and ev.compile,
    )  # fmt: skip

    def runner(kind: str) -> EncoderRunner:
        if kind not in encoder_precision:
            raise KeyError(f"config annotation.precision has no entry for encoder {kind!r}")
        precision = encoder_precision[kind] if fast else "float32"
        return EncoderRunner(build_encoder(kind, files, torch_device), precision, fast, fast and ev.compile)

    built = Encoders(
        identity=runner(enc.identity),
        attribute=runner(enc.attribute),
        landmarks={role: runner(kind) for role, kind in enc.detectors.items()},
    )
    return G, editor, built, enc.detectors, torch_device


def real_features(attribute_faces, weights, out_path, batch_size: int, device: str) -> None:
    """The real faces' Inception features, a target of their own (FID/KID of every evaluation)."""
    write_real_features(attribute_faces, weights, out_path, resolve_device(device), batch_size)
    write_job_provenance(out_path, {"batch_size": batch_size}, {"attribute_faces": attribute_faces, "weights": weights})


def evaluate_edits(
    model,
    faces,
    annotations,
    attribute_faces,
    real_features,
    generator,
    files: dict,
    encoders: dict,
    evaluation: dict,
    encoder_precision: dict,
    out_metrics,
    out_grid,
    device: str,
    layers: list[str] | None = None,
    num_pairs: int | None = None,
    title: str = "",
    where: str = "ablation.configs",
) -> dict:
    """metrics.json (+ FID) and an edit grid, for a variant or (with `layers`) an ablation;
    `encoder_precision` is config.yaml's `annotation.precision` (see `build_parts`); `where` is the
    layers' config key, for the message if the generator lacks one of them."""
    ev = EvaluationSettings.parse(evaluation)
    ev.validate()
    G, editor, built, detectors, torch_device = build_parts(
        model, faces, annotations, generator, files, encoders, ev, encoder_precision, device
    )
    attributes = AttributeFaces(attribute_faces)
    mask = layers_mask(G, layers, torch_device, where)
    n = int(num_pairs or ev.num_pairs)
    values, edited = evaluate(editor, built, attributes, n, ev.seed, ev.batch_size, mask)
    record = metrics_record(values, detectors)
    fid_weights = files["fid_inception"]
    edited_features = inception_features(edited, fid_weights, torch_device, ev.batch_size)
    real, real_statistics = read_real(real_features, attribute_faces)
    record["fid"] = fid_kid(edited_features, real, statistics_b=real_statistics)
    record["fid"]["weights_file"] = Path(fid_weights).name
    record.update(
        {
            "num_pairs": n,
            "seed": ev.seed,
            "attribute_source": attributes.source,
            "attribute_file": str(attribute_faces),
            "model": str(model),
            "layers": layers,
            "generative_field_range": field_range(G, layers) if layers else None,
            "arithmetic": {  # how the numbers were computed (issue 16), as the dataset's synthesis_arithmetic
                "edited_faces": editor.arithmetic,
                "encoders": built.describe(),
                "encoder_float32_fallbacks": built.fallbacks,
                "fid_inception": "float32: torch-fidelity's extractor in torch's default settings, as torch-fidelity runs it",
                "batch_size": ev.batch_size,
            },
        }
    )
    rows, cols = ev.grid
    identity_u8, attr_u8, edited_u8 = edit_grid_images(editor, built, attributes, int(rows), int(cols), mask)
    edit_grid(identity_u8, attr_u8, edited_u8, out_grid, title=title)
    write_json_atomic(out_metrics, record)
    inputs = {"model": model, "faces": faces, "annotations": annotations, "attribute_faces": attribute_faces}
    inputs["real_features"] = real_features
    params = {"evaluation": evaluation, "encoders": encoders, "encoder_precision": encoder_precision}
    params.update({"layers": layers, "num_pairs": n})
    write_job_provenance(out_metrics, params, {**inputs, "generator": generator, **files})
    log.info(
        "identity %.3f, expression (%s) %.4f, pose (%s) %.3f, FID %.2f over %d pairs",
        record["identity"]["mean"],
        detectors["train"],
        record["expression"]["train"]["mean"],
        detectors["train"],
        record["pose"]["train"]["mean"],
        record["fid"]["fid"],
        n,
    )
    return record


def sparsity_analyses(
    model,
    faces,
    annotations,
    attribute_faces,
    generator,
    files: dict,
    encoders: dict,
    sparsity_cfg: dict,
    evaluation: dict,
    encoder_precision: dict,
    outputs: dict,
    device: str,
) -> None:
    """Figs. 7 and 8: the histogram of normalised |dS| and the reuse of the top channels."""
    sp, ev = SparsitySettings.parse(sparsity_cfg), EvaluationSettings.parse(evaluation)
    G, editor, built, _, _ = build_parts(
        model, faces, annotations, generator, files, encoders, ev, encoder_precision, device
    )
    attributes = AttributeFaces(attribute_faces)
    dS = style_offsets(editor, built, attributes, sp.histogram_tests, ev.seed, ev.batch_size)
    hist = sparsity.dS_histogram(dS, bins=sp.bins, threshold=sp.threshold)
    sparsity.write_histogram_csv(hist, outputs["histogram_csv"])
    sparsity.write_histogram_summary(hist, outputs["histogram_summary"])
    sparsity.plot_histogram(hist, outputs["histogram_png"], title=f"|dS| of {len(dS)} edits ({attributes.source})")
    reuse = sparsity.channel_reuse(dS[: sp.reuse_tests], top_k=sp.top_k)
    sparsity.write_reuse_csv(reuse, G.layers, outputs["reuse_csv"])
    sparsity.plot_reuse(reuse, G.layers, outputs["reuse_png"])
    inputs = {"model": model, "faces": faces, "annotations": annotations, "attribute_faces": attribute_faces}
    params = {"sparsity": sparsity_cfg, "evaluation": evaluation, "encoders": encoders}
    params["encoder_precision"] = encoder_precision
    write_job_provenance(outputs["histogram_csv"], params, {**inputs, "generator": generator, **files})
