"""One module per rule: the only code that knows config sections, paths, devices and
provenance. Each workflow script is a single call `jobs.<stage>.run(...)`; the science modules
take objects and paths."""
