"""Generator families (StyleGAN3 here; StyleGAN2 lives in `pipeline_lib.stylegan2` for now)."""
