"""The generators the pipeline studies, with one API for every family: `load_generator(path)`
gives `G.mapping`, `G.styles(ws) -> (S, S_rgb)`, `G.synthesize(S, S_rgb)` and the layer table
`G.layers` (`layers.py`), whatever the file's format."""
