"""Pretrained files: the registry of every file the pipeline reads (`registry.py`), the one
allow-list unpickler (`unpickler.py`), the one checkpoint reader (`checkpoints.py`) and the one
error type of a missing or bad weights file (`WeightsError`)."""
