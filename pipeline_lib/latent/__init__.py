"""Wulff & Torralba's Gaussianized latent space V (arXiv 2009.06529) and what is built on it.

- `gaussian`: v = leaky_relu_5(w), the fitted Gaussian of V, its PCA basis, gaussianity numbers.
- `compression`: log-compression of large PCA coefficients, an alternative to truncation.
- `projector`: a batched image -> W / W+ / S projector (NVIDIA's schedule) with the V prior.
- `evaluation`: reconstruction and interpolation helpers for the W&T experiments.

Only the public API of the generator is used (`mapping`, `styles`, `synthesize`,
`ws_to_image`, `noise_const` buffers when present), so StyleGAN3 works as well as StyleGAN2.
"""

from pipeline_lib.latent.gaussian import LatentGaussian, fit_latent_gaussian, to_v, to_w

__all__ = ["LatentGaussian", "fit_latent_gaussian", "to_v", "to_w"]
