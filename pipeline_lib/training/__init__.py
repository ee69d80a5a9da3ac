"""Training of M_ref (paper Sec. 3.3-3.5): the losses (Eqs. 7-12), the data, one step, the run
folder, the loop (`loop.train`, readable top to bottom) and the multi-GPU launch."""
