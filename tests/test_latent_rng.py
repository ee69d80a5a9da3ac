"""The counter-based latent generator: Philox against its published answers, independence of a
face's z from the block it is drawn in, its statistics, and frozen values of the format."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats

from pipeline_lib.dataset.latent_rng import draw_latents, latents_counter, latents_numpy, philox4x32
from pipeline_lib.dataset.synthesis import ChunkSynthesizer, SynthesisSettings
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator

# Random123's known-answer vectors for Philox-4x32-10 (kat_vectors): counter, key, output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def test_philox_gives_the_published_answers():
    counters = [torch.tensor([k[0][j] for k in KAT], dtype=torch.int64) for j in range(4)]
    for row, (_, key, expected) in enumerate(KAT):
        words = philox4x32(tuple(c[row : row + 1] for c in counters), key)
        assert [int(w) for w in words] == list(expected)


def test_z_is_box_muller_of_the_philox_words():
    """Face 0, components 0-3 of seed 0 come from the first KAT vector's words; numpy's float64
    transcendentals (not torch's) give the same float32 values."""
    x = np.array(KAT[0][2], dtype=np.float64)
    u = (x + 0.5) / 2**32
    r01, r23 = np.sqrt(-2 * np.log(u[0])), np.sqrt(-2 * np.log(u[2]))
    expected = np.array(
        [r01 * np.cos(2 * np.pi * u[1]), r01 * np.sin(2 * np.pi * u[1]), r23 * np.cos(2 * np.pi * u[3]),
         r23 * np.sin(2 * np.pi * u[3])],
    ).astype(np.float32)  # fmt: skip
    assert np.array_equal(latents_counter(0, 0, 1, 4)[0].numpy(), expected)


def test_a_face_z_does_not_depend_on_the_block_it_is_drawn_in():
    whole = latents_counter(11, 0, 64, 32)
    for start, count in [(0, 1), (5, 7), (37, 27), (63, 1)]:
        assert torch.equal(latents_counter(11, start, count, 32), whole[start : start + count])
    assert torch.equal(latents_counter(11, 0, 64, 16), whole[:, :16])  # nor on z_dim's later blocks
    assert not torch.equal(latents_counter(12, 0, 64, 32), whole)
    big = 2**33 + 3  # face indices and seeds beyond 32 bits use the counter's and key's high words
    assert not torch.equal(latents_counter(11, big, 1, 32), latents_counter(11, 3, 1, 32))
    assert not torch.equal(latents_counter(2**32 + 11, 0, 1, 32), whole[:1])


def test_the_synthesizer_blocks_give_the_same_z_in_any_order():
    G = init_random_generator(
        GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, num_mapping_layers=1, channel_base=64, channel_max=8),
        seed=0,
        w_avg_samples=10,
    )
    settings = SynthesisSettings.defaults(global_seed=3, chunk_size=4, dtype="float32", compile=False)
    synth = ChunkSynthesizer(G, dataclasses.replace(settings, latent_rng="counter"), "cpu")
    for start in (8, 0, 20, 4):
        assert torch.equal(synth.latents(start), latents_counter(3, start, 4, 16))
    numpy_synth = ChunkSynthesizer(G, dataclasses.replace(settings, latent_rng="numpy"), "cpu")
    assert np.array_equal(numpy_synth.latents(8).numpy(), latents_numpy(3, range(8, 12), 16))


def test_the_latents_are_standard_normal():
    z = latents_counter(0, 0, 200, 512).double()  # 102,400 values
    flat = z.flatten().numpy()
    n = flat.size
    assert abs(flat.mean()) < 4 / math.sqrt(n)  # 4 standard errors
    assert abs(flat.std() - 1) < 4 / math.sqrt(2 * n)
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    assert abs(stats.skew(flat)) < 4 * math.sqrt(6 / n) and abs(stats.kurtosis(flat)) < 4 * math.sqrt(24 / n)
    # no correlation between components (the Box-Muller pairs included) or between faces
    corr = np.corrcoef(z.numpy().T)
    off = corr[~np.eye(512, dtype=bool)]
    assert np.abs(off).max() < 6 / math.sqrt(200) and abs(off.mean()) < 0.01
    faces = np.corrcoef(z[:, :].numpy())
    assert np.abs(faces[~np.eye(200, dtype=bool)]).max() < 6 / math.sqrt(512)


def test_frozen_values():
    """The file format: these must never change (a dataset's faces would)."""
    expected = [
        [0.991137683391571, -0.9246625900268555, -0.6176089644432068, -0.48206859827041626,
         -0.15363822877407074, 0.18082590401172638, 0.8317351341247559, 0.19743971526622772],
        [1.1363673210144043, -0.6758829951286316, 1.2405917644500732, 0.2242511361837387,
         1.021978735923767, -0.8072826862335205, -0.13728109002113342, 0.11062309145927429],
    ]  # fmt: skip
    assert latents_counter(0, 0, 2, 8).tolist() == expected
    assert latents_counter(2**40 + 5, 123456789012, 1, 4).tolist() == [
        [2.4915900230407715, -0.9137751460075378, 1.9524827003479004, 0.3720404803752899]
    ]
    assert latents_counter(0, 0, 1, 512)[0, -4:].tolist() == [
        0.12261714786291122,
        -0.5524945259094238,
        0.7573819756507874,
        -1.2719101905822754,
    ]


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="groups of four"):
        latents_counter(0, 0, 1, 6)
    with pytest.raises(ValueError, match="latent_rng must be one of"):
        draw_latents("mt19937", 0, 0, 1, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_and_gpu_latents_agree():
    cpu = latents_counter(5, 1000, 512, 512)
    gpu = latents_counter(5, 1000, 512, 512, device="cuda").cpu()
    assert (cpu != gpu).sum() <= 2 and torch.allclose(cpu, gpu, rtol=0, atol=1e-6)
