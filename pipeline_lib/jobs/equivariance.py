"""Rule `equivariance` (StyleGAN3 only): EQ-T, EQ-T_frac and EQ-R of the generator,
`metrics.json`, `figure.png` and their provenance."""

from __future__ import annotations

import logging

from pipeline_lib.atomic import write_json_atomic
from pipeline_lib.devices import resolve_device
from pipeline_lib.evaluation.equivariance import example_pairs, measure_all, plot_examples
from pipeline_lib.generator import load_generator
from pipeline_lib.provenance import write_provenance
from pipeline_lib.settings import EquivarianceSettings

log = logging.getLogger(__name__)


def run(generator, metrics_json, figure, provenance, equivariance: dict, device: str) -> dict:
    settings = EquivarianceSettings.parse(equivariance)
    settings.validate()
    torch_device = resolve_device(device)
    G = load_generator(generator, device=torch_device)
    if G.family != "stylegan3":
        raise ValueError(f"{generator}: equivariance metrics need a StyleGAN3 generator, got {G.family}")
    log.info("equivariance of %s on %s: %s, %d samples each", generator, torch_device, settings.metrics,
             settings.num_samples)  # fmt: skip
    record = measure_all(G, settings.metrics, settings.num_samples, settings.batch_size, settings.seed)
    for metric, value in record["metrics"].items():
        log.info("%-9s %.2f dB over %d samples", value["name"], value["psnr_db"], value["num_samples"])
    write_json_atomic(metrics_json, record)
    examples = {m: example_pairs(G, m, settings.examples, settings.seed) for m in settings.metrics}
    plot_examples(examples, record, figure)
    write_provenance(provenance, params={"equivariance": equivariance}, inputs={"generator": generator})
    log.info("wrote %s and %s", metrics_json, figure)
    return record
