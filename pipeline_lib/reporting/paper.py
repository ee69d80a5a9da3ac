"""Every number printed in the paper we reproduce, kept as data with the section it comes from,
so that reports print it beside ours.

He, Henderson & Pugeault (2025), "Generative Fields: Uncovering Hierarchical Feature Control
for StyleGAN via Inverted Receptive Fields", arXiv 2504.17712; read in the full text
(`shared/papers/generative_fields_he2025.txt`). Values are as printed; where the paper is
ambiguous the comment says so. Metrics: FID (lower is better), identity = ArcFace cosine
(higher), expression = landmark distance / image resolution (lower), pose = MSE of the Euler
angles (lower), all Sec. 4.1.
"""

PAPER_CITATION = (
    "Z. He, P. Henderson, N. Pugeault. Generative Fields: Uncovering Hierarchical Feature "
    "Control for StyleGAN via Inverted Receptive Fields. 2025."
)

# Appendix Table 1: generative field (pixels, one side) of each conv layer of the FFHQ-256
# paper256 generator. Eq. 1 gives 507 for conv0; the paper prints 506.
PAPER256_GENERATIVE_FIELDS = {
    "conv0": 506,
    "conv1": 379,
    "conv2": 251,
    "conv3": 187,
    "conv4": 123,
    "conv5": 91,
    "conv6": 59,
    "conv7": 43,
    "conv8": 27,
    "conv9": 19,
    "conv10": 11,
    "conv11": 7,
    "conv12": 3,
}

# Appendix Table 1, all columns: conv layer -> (input resolution, StyleSpace index, generative
# field, channels). The channels sum to |S| = 4928 (Sec. 3.1).
PAPER256_APPENDIX_SOURCE = "appendix Table 1"
PAPER256_APPENDIX = {
    "conv0": (4, "s0", 506, 512),
    "conv1": (8, "s2", 379, 512),
    "conv2": (8, "s3", 251, 512),
    "conv3": (16, "s5", 187, 512),
    "conv4": (16, "s6", 123, 512),
    "conv5": (32, "s8", 91, 512),
    "conv6": (32, "s9", 59, 512),
    "conv7": (64, "s11", 43, 512),
    "conv8": (64, "s12", 27, 256),
    "conv9": (128, "s14", 19, 256),
    "conv10": (128, "s15", 11, 128),
    "conv11": (256, "s17", 7, 128),
    "conv12": (256, "s18", 3, 64),
}
PAPER_STYLE_DIM = 4928  # Sec. 3.1

PAPER_URL = "https://arxiv.org/abs/2504.17712"

# Metric order of every table; `higher_is_better` sets the arrow printed beside the name.
PAPER_METRICS = {
    "fid": {"label": "FID", "higher_is_better": False},
    "identity": {"label": "ID", "higher_is_better": True},
    "expression": {"label": "Exp", "higher_is_better": False},
    "pose": {"label": "Pose", "higher_is_better": False},
}


def _row(label, fid, identity, expression, pose, source, **extra) -> dict:
    return {"label": label, "fid": fid, "identity": identity, "expression": expression, "pose": pose,
            "source": source, **extra}  # fmt: skip


# Table 1 (Sec. 4.1.1): comparison with prior work, 1,000 random edits. LORD [38], FSGAN [39]
# and IDDISEN (Nitzan et al. [3]) are the paper's numbers only: we do not run those methods.
PAPER_TABLE1_SOURCE = "Table 1, Sec. 4.1.1 (1,000 random edits)"
PAPER_TABLE1 = {
    "lord": _row("LORD", 23.08, 0.20, 0.085, 13.34, PAPER_TABLE1_SOURCE, paper_only=True),
    "fsgan": _row("FSGAN", 8.90, 0.35, 0.013, 6.73, PAPER_TABLE1_SOURCE, paper_only=True),
    "iddisen": _row("IDDISEN", 4.28, 0.60, 0.017, 9.74, PAPER_TABLE1_SOURCE, paper_only=True),
    "ours": _row("Ours (final model)", 4.89, 0.82, 0.017, 1.67, PAPER_TABLE1_SOURCE),
}

# Table 2 (Sec. 4.1.2): ablation. Keys are our variants (config.yaml `training.variants`);
# labels are the paper's row names verbatim. Each row adds to the one above (Sec. 4.1.2: "the
# other configurations are adjustments to the default configuration"); the last row is
# Table 1's "Ours" (same four numbers).
PAPER_TABLE2_SOURCE = "Table 2, Sec. 4.1.2 (same protocol as Table 1)"
PAPER_TABLE2 = {
    "concat": _row("default configuration", 3.65, 0.84, 0.026, 3.29, PAPER_TABLE2_SOURCE),
    "no_concat": _row("– feature concatenation", 8.52, 0.77, 0.016, 1.62, PAPER_TABLE2_SOURCE),
    "style_reg": _row("+ style regularization", 4.48, 0.83, 0.022, 2.33, PAPER_TABLE2_SOURCE),
    "euler": _row("+ Euler angle loss", 4.89, 0.82, 0.017, 1.67, PAPER_TABLE2_SOURCE),
}

# Table 3 (Sec. 4.2.2): dS kept only on a range of conv layers, 100 tests per configuration.
# Keyed by the layer range ("convA-convB", inclusive), never by the configuration's name, so a
# row of ours and the paper's cannot miss each other. The paper has no FID column here (None).
# "generative_fields" is the paper's GFs column, (smallest, largest) in px.
PAPER_TABLE3_SOURCE = "Table 3, Sec. 4.2.2 (100 tests per configuration; no FID column)"
PAPER_TABLE3 = {
    "conv0-conv7": _row("config.1", None, 0.75, 0.016, 0.99, PAPER_TABLE3_SOURCE, generative_fields=(43, 506)),
    "conv0-conv4": _row("config.2", None, 0.74, 0.019, 1.04, PAPER_TABLE3_SOURCE, generative_fields=(123, 506)),
    "conv0-conv2": _row("config.3", None, 0.76, 0.028, 0.67, PAPER_TABLE3_SOURCE, generative_fields=(251, 506)),
    "conv3-conv6": _row("config.4", None, 0.73, 0.017, 1.21, PAPER_TABLE3_SOURCE, generative_fields=(59, 187)),
    "conv6-conv11": _row("config.5", None, 0.69, 0.033, 0.84, PAPER_TABLE3_SOURCE, generative_fields=(7, 59)),
}
for _key, _r in PAPER_TABLE3.items():
    _r["layers"] = tuple(_key.split("-"))
del _key, _r

# Sec. 4.2.1 (Eqs. 13-15, Fig. 8): 10 tests, the top 50 |dS| channels of each; their union T_u
# has 94 channels; the channels named as reused by every edit, 1-based indices of S (Sec. 3.1:
# S = [S_d], 1 <= d <= 4928), so column d - 1 of our 0-based S.
PAPER_SPARSITY_SOURCE = "Sec. 4.2.1 (Fig. 8, Eqs. 13-15)"
PAPER_SPARSITY = {
    "tests": 10,
    "top_k": 50,
    "union_size": 94,
    "named_channels_1based": (448, 518, 645, 747, 776),
    "high_functional_threshold": 0.6,  # Fig. 7: normalised |dS| above 0.6
    "histogram_bins": 20,  # Fig. 7
}

# Sec. 4.2.2: average face size, distance between landmarks 1 and 17 (temples), FFHQ256 and
# the synthetic dataset (one number for both).
PAPER_FACE_SIZE_SOURCE = "Sec. 4.2.2 (landmarks 1 and 17; FFHQ256 and the synthetic dataset)"
PAPER_FACE_SIZE = 141.68

# Sec. 3.5 / 4.1: training and protocol numbers (for the README and reports).
PAPER_SETTINGS = {
    "lambda_id": 1.0,  # Sec. 3.5, lambda_1
    "lambda_attr": 0.01,  # lambda_2
    "lambda_rec": 0.02,  # lambda_3
    "alpha": 0.84,  # Eq. 9
    "batch_size": 6,
    "lr": (5e-6, 1e-7),
    "betas": (0.9, 0.999),
    "cross_ratio": 3,
    "dataset_size": 48000,  # Sec. 4.1: 36,000 identity + 12,000 attribute images
    "edits_tables_1_2": 1000,
    "tests_table_3": 100,
}
