"""Rule `generative_fields`: table.csv, figure.png and their provenance record."""

from __future__ import annotations

import logging

from pipeline_lib.generative_fields import write_generative_fields
from pipeline_lib.generator import load_generator
from pipeline_lib.provenance import write_provenance

log = logging.getLogger(__name__)


def run(generator, table, figure, provenance, seed: int, measure: bool) -> None:
    G = load_generator(generator)
    rows = write_generative_fields(G, table, figure, seed=seed, measure=measure)
    for row in rows:
        log.info(
            "%-6s %-10s Eq.1 %4d  paper %4s  exact %4d  measured %4s",
            row["layer"], row["ada_name"], row["gf_eq1"], row["gf_paper"], row["gf_fir"], row["gf_measured"],
        )  # fmt: skip
    write_provenance(provenance, params={"seed": seed, "measure": measure}, inputs={"generator": generator})
    log.info("wrote %s and %s", table, figure)
