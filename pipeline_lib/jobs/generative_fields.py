"""Rule `generative_fields`: table.csv, figure.png and their provenance record, for either family
(StyleGAN2: Eq. 1, the FIR-aware support and the measurement; StyleGAN3: the analytic support
beside the measurement). The first job to load the generator, so it also checks the configured
`generator.family` against the tensors: a wrong setting fails here, before the dataset."""

from __future__ import annotations

import logging

from pipeline_lib.generative_fields import write_generative_fields
from pipeline_lib.generative_fields_stylegan3 import write_stylegan3_fields
from pipeline_lib.generator import load_generator
from pipeline_lib.provenance import write_provenance

log = logging.getLogger(__name__)


def run(generator, table, figure, provenance, seed: int, measure: bool, family: str | None = None) -> None:
    G = load_generator(generator)
    if family is not None and G.family != family:
        raise ValueError(
            f"{generator} holds a {G.family} generator but config generator.family is {family}: "
            f"set generator.family: {G.family}"
        )
    if G.family == "stylegan3":
        rows = write_stylegan3_fields(G, table, figure, seed=seed, measure=measure)
        for row in rows:
            log.info(
                "%-6s %-12s rate %4d->%4d cutoff %8.3f analytic %4d unclipped %5d measured %4s",
                row["layer"], row["nvidia_name"], row["in_sampling_rate"], row["out_sampling_rate"],
                row["out_cutoff"], row["gf_analytic"], row["gf_unclipped"], row["gf_measured"],
            )  # fmt: skip
    else:
        rows = write_generative_fields(G, table, figure, seed=seed, measure=measure)
        for row in rows:
            log.info(
                "%-6s %-10s Eq.1 %4d  paper %4s  exact %4d  measured %4s",
                row["layer"], row["ada_name"], row["gf_eq1"], row["gf_paper"], row["gf_fir"], row["gf_measured"],
            )  # fmt: skip
    write_provenance(provenance, params={"seed": seed, "measure": measure}, inputs={"generator": generator})
    log.info("wrote %s and %s", table, figure)
