"""The evaluation jobs end to end on the tiny inputs, with the real faces of ../shared standing in
for FFHQ: an untrained M_ref (dS = 0) must give back the identity face (identity 1), and the
sparsity job must account for every channel of S."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from training_inputs import DETECTOR, ENCODERS_CFG

from pipeline_lib.editing import AttributeFaces, Editor, Encoders
from pipeline_lib.encoders import build_encoder
from pipeline_lib.encoders.inference import EncoderRunner
from pipeline_lib.evaluation.edits import draw_pairs, evaluate
from pipeline_lib.evaluation.metrics import expression_distance, identity_similarity, pose_error
from pipeline_lib.generator import load_generator
from pipeline_lib.images import from_uint8_hwc
from pipeline_lib.jobs.evaluation import evaluate_edits, sparsity_analyses
from pipeline_lib.mref import ReferenceMapper, load_mapper, save_mapper
from pipeline_lib.settings import load_config

EVAL_CFG = {"num_pairs": 6, "seed": 0, "batch_size": 3, "grid": [2, 3], "precision": "float16", "compile": False}
ENCODER_PRECISION = load_config()["annotation"]["precision"]  # a CPU runs float32 whatever it says


@pytest.fixture(scope="module")
def setup(tmp_path_factory, training_inputs, real_faces_fid):
    """The session's tiny inputs and real faces (conftest), and two editors in this module's folder."""
    folder = tmp_path_factory.mktemp("evaluation")
    inputs = training_inputs
    files = dict(inputs["encoder_files"])
    files["fid_inception"] = str(real_faces_fid[1])
    G = load_generator(inputs["generator_path"])
    untrained = ReferenceMapper(2048, G.style_dim, (8,))
    save_mapper(folder / "untrained.pt", untrained, {"settings": {"input_features": "attribute"}})
    trained = ReferenceMapper(2048, G.style_dim, (8,))
    torch.manual_seed(0)
    torch.nn.init.normal_(trained.head.weight, std=20.0)  # a large edit: the tiny generator saturates
    save_mapper(folder / "random.pt", trained, {"settings": {"input_features": "attribute"}})
    return folder, inputs, files, real_faces_fid


def job_args(folder, inputs, files, real, model):
    return dict(
        model=folder / model,
        faces=inputs["faces_path"],
        annotations=inputs["annotations_path"],
        attribute_faces=real[0],
        generator=inputs["generator_path"],
        files=files,
        encoders=ENCODERS_CFG,
        encoder_precision=ENCODER_PRECISION,
        device="cpu",
    )


def test_an_untrained_editor_keeps_the_identity_and_the_metrics_record_their_context(setup, tmp_path):
    folder, inputs, files, real = setup
    out = tmp_path / "metrics.json"
    evaluate_edits(
        **job_args(folder, inputs, files, real, "untrained.pt"),
        real_features=real[2],
        evaluation=EVAL_CFG,
        out_metrics=out,
        out_grid=tmp_path / "grid.png",
    )
    m = json.loads(out.read_text())
    assert m["identity"]["n"] == 6 and m["identity"]["mean"] > 0.999  # dS = 0: the edit is the identity face
    assert m["attribute_source"].startswith("real") and m["fid"]["num_a"] == 6 and m["fid"]["num_b"] == 81
    assert m["expression"]["train"]["mean"] > 0  # real attribute faces differ from the generated identity faces
    assert set(m["pose"]) == {"train", "eval"} and m["layers"] is None
    arithmetic = m["arithmetic"]  # a CPU runs the float32 reference whatever evaluation.precision says
    assert arithmetic["edited_faces"]["precision"] == "float32" and not arithmetic["edited_faces"]["compile"]
    assert arithmetic["edited_faces"]["synthesis_arithmetic"].startswith("FastSynthesis float32")
    assert {e["precision"] for e in arithmetic["encoders"].values()} == {"float32"}
    assert set(arithmetic["encoders"]) == {"identity", "attribute", "landmarks/train", "landmarks/eval"}
    assert (tmp_path / "grid.png").stat().st_size > 20_000


def test_ablation_masks_dS_to_its_layers(setup, tmp_path):
    folder, inputs, files, real = setup
    args = job_args(folder, inputs, files, real, "random.pt")
    args["real_features"] = real[2]
    full = evaluate_edits(**args, evaluation=EVAL_CFG, out_metrics=tmp_path / "a.json", out_grid=tmp_path / "a.png")
    late = evaluate_edits(
        **args,
        evaluation=EVAL_CFG,
        out_metrics=tmp_path / "b.json",
        out_grid=tmp_path / "b.png",
        layers=["conv6", "conv11"],
    )
    assert late["layers"] == ["conv6", "conv11"]
    G = load_generator(inputs["generator_path"])
    fields = {s.paper_name: s.generative_field for s in G.conv_layers}
    assert late["generative_field_range"] == [fields["conv6"], fields["conv11"]] == [59, 7]
    assert full["identity"]["mean"] < 0.99  # the edit changed the faces
    assert full["identity"]["mean"] != pytest.approx(late["identity"]["mean"], abs=1e-4)


def test_pairs_depend_only_on_the_seed():

    a = draw_pairs(5, 3, np.arange(10), 7)
    b = draw_pairs(5, 3, np.arange(10), 7)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert not (draw_pairs(5, 4, np.arange(10), 7)[1] == a[1]).all()


def test_sparsity_job_writes_both_figures_over_every_channel(setup, tmp_path):
    folder, inputs, files, real = setup
    names = ["histogram_csv", "histogram_summary", "histogram_png", "reuse_csv", "reuse_png"]
    outputs = {
        n: tmp_path / (n.replace("_png", ".png").replace("_csv", ".csv").replace("_summary", "_summary.json"))
        for n in names
    }
    sparsity_cfg = {
        "variant": "euler",
        "histogram_tests": 5,
        "bins": 20,
        "threshold": 0.6,
        "reuse_tests": 4,
        "top_k": 10,
    }
    sparsity_analyses(
        **job_args(folder, inputs, files, real, "random.pt"),
        sparsity_cfg=sparsity_cfg,
        evaluation=EVAL_CFG,
        outputs=outputs,
    )
    rows = list(csv.DictReader(open(outputs["histogram_csv"])))
    assert len(rows) == 20
    G = load_generator(inputs["generator_path"])
    assert sum(float(r["mean_count"]) for r in rows) == pytest.approx(G.style_dim)
    reuse = list(csv.DictReader(open(outputs["reuse_csv"])))
    assert 10 <= len(reuse) <= 40 and all(r["conv_layer"].startswith("conv") for r in reuse)
    assert outputs["reuse_png"].stat().st_size > 10_000


def test_face_size_of_the_real_faces_with_the_real_detector(setup, tmp_path):
    """Sec. 4.2.2 on real faces: the shared FFHQ-aligned faces through the real 3DDFA_V2 weights
    land near the paper's 141.68 px, beside the synthetic set's summary."""
    from pipeline_lib.generative_fields import field_table, write_table_csv
    from pipeline_lib.jobs import face_size

    folder, inputs, files, real = setup
    table = tmp_path / "table.csv"
    write_table_csv(field_table(load_generator(inputs["generator_path"]), measure=False), table)
    record = face_size.run(
        inputs["faces_path"], inputs["annotations_path"], table, tmp_path / "face_size.json", tmp_path / "fs.png",
        ENCODERS_CFG, {"config4": ["conv3", "conv6"]}, real_faces=real[0], files=files,
        batch_size=32, device="cpu",
    )  # fmt: skip
    assert set(record) == {"synthetic (faces.h5)", "real (FFHQ)"}
    real = record["real (FFHQ)"]
    assert real["n"] == 81 and real["detector"] == ENCODERS_CFG["landmarks"]["train"]
    assert 120 < real["mean"] < 165 and real["std"] < 20
    assert json.loads((tmp_path / "face_size.json").read_text())["real (FFHQ)"]["mean"] == real["mean"]
    assert (tmp_path / "fs.png").stat().st_size > 5_000


def _evaluation_parts(setup, fast: bool, precision: str = "float32", encoder_precision: str = "float32"):
    """The Editor and Encoders of `build_parts`, with the fast mode chosen explicitly (the job picks
    it from the device, so on a CPU only this way reaches it)."""
    folder, inputs, files, real = setup
    G = load_generator(inputs["generator_path"])
    mapper, _ = load_mapper(folder / "random.pt")
    editor = Editor(
        G, mapper, "attribute", inputs["faces_path"], inputs["annotations_path"], "cpu", precision, channels_last=fast
    )

    def runner(kind):
        return EncoderRunner(build_encoder(kind, files, "cpu"), encoder_precision, fast)

    encoders = Encoders(
        identity=runner(ENCODERS_CFG["identity"]),
        attribute=runner(ENCODERS_CFG["attribute"]),
        landmarks={"train": runner(DETECTOR)},
    )
    return editor, encoders, AttributeFaces(real[0])


def test_the_fast_mode_in_float32_computes_what_the_reference_computes(setup):
    """Channels-last synthesis and encoders (the GPU's fast mode, in float32) and another batch
    size give the reference's numbers to rounding, and the reference's first pair equals the
    edit computed directly with the reference generator and the plain encoders."""
    editor, encoders, attributes = _evaluation_parts(setup, fast=False)
    ref_values, ref_edited = evaluate(editor, encoders, attributes, 5, 0, 5, progress=False)
    fast_values, fast_edited = evaluate(*_evaluation_parts(setup, fast=True), 5, 0, 2, progress=False)
    assert set(fast_values) == set(ref_values) == {"identity", "expression/train", "pose/train"}
    for key, value in ref_values.items():
        np.testing.assert_allclose(fast_values[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
    assert (fast_edited.int() - ref_edited.int()).abs().max() <= 1
    assert ref_values["identity"].min() < 0.99  # the random M_ref edits: the comparison is not of identity faces

    ids, attrs = draw_pairs(5, 0, editor.identity_split, len(attributes.indices))
    with torch.no_grad():  # pair 0 from scratch: Generator.synthesize, the encoders' own calls
        attr_img = from_uint8_hwc(torch.from_numpy(attributes.read(attrs[:1])))
        dS = editor.mapper(encoders.attribute.encoder.embed(attr_img))
        S_id, S_rgb = editor.G.styles_from_w(editor.w[ids[:1]])
        edited = editor.G.synthesize(S_id + dS, S_rgb, noise_mode=editor.noise_mode).clamp(-1, 1)
        similarity = identity_similarity(editor.identity_embedding[ids[:1]], encoders.identity.encoder.embed(edited))
        lnd_a, pose_a = encoders.landmarks["train"].encoder.landmarks_and_pose(attr_img)
        lnd_e, pose_e = encoders.landmarks["train"].encoder.landmarks_and_pose(edited)
    assert ref_values["identity"][0] == pytest.approx(similarity[0], abs=1e-4)
    assert ref_values["expression/train"][0] == pytest.approx(expression_distance(lnd_a, lnd_e, 256)[0], abs=1e-5)
    assert ref_values["pose/train"][0] == pytest.approx(pose_error(pose_a, pose_e)[0], rel=1e-3, abs=1e-3)


def test_the_reduced_precision_mode_stays_close_and_says_how_it_ran(setup):
    """float16 synthesis and bfloat16 encoders (the GPU's arithmetic, here on the CPU) move the
    metrics only slightly, and the Editor and Encoders record it."""
    ref_values, _ = evaluate(*_evaluation_parts(setup, fast=False), 4, 0, 4, progress=False)
    editor, encoders, attributes = _evaluation_parts(setup, True, "float16", "bfloat16")
    values, _ = evaluate(editor, encoders, attributes, 4, 0, 4, progress=False)
    np.testing.assert_allclose(values["identity"], ref_values["identity"], atol=0.05)
    assert editor.arithmetic["precision"] == "float16" and "float16 convs" in editor.arithmetic["synthesis_arithmetic"]
    assert {d["precision"] for d in encoders.describe().values()} == {"bfloat16"}


def test_an_encoder_output_that_overflows_is_recomputed_in_float32(setup, monkeypatch):
    _, encoders, attributes = _evaluation_parts(setup, True, "float32", "float16")
    img = from_uint8_hwc(torch.from_numpy(attributes.read(np.arange(2))))
    reference = encoders.attribute.reference(img)["embedding"]
    monkeypatch.setattr(encoders.attribute, "_run", lambda x: {"embedding": torch.full_like(reference, torch.inf)})
    assert torch.equal(encoders.attribute_features(img), reference) and encoders.fallbacks == 1
