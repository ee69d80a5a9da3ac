"""Measuring edits: Table 1's metrics and FID (`metrics.py`, `fid.py`), the edit evaluation and
the generative-field ablation (`edits.py`), and the sparsity analyses of Figs. 7-8."""
