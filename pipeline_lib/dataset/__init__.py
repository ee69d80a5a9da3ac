"""The synthetic face dataset (paper Sec. 4) and the real faces: synthesis into shards, the
store that opens and cross-checks faces, annotations and statistics, the statistics of S,
annotation with every encoder, and the real-faces file."""
