"""What a reader sees: every figure in one Agg style, the tables beside the paper's numbers, and
the paper's numbers themselves as data (`paper.py`)."""
