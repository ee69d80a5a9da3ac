"""`python -m pipeline_lib edit ...` and `python -m pipeline_lib export ...` (see pipeline_lib/cli.py)."""

from pipeline_lib.cli import main

raise SystemExit(main())
