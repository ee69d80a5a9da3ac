"""Pretrained files: the registry of every file the pipeline reads (`registry.py`), the one
allow-list unpickler (`unpickler.py`), the one checkpoint reader (`checkpoints.py`) and the one
error type of a missing or bad weights file (`WeightsError`)."""


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or not what was expected; the message names the
    file, what was expected and where to get it. Every loader raises this one type."""
