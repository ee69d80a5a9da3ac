"""`read_images` returns the rows asked for, in the order asked (repeats, runs, gaps), from an
HDF5 dataset of one image per chunk as the pipeline stores them, as numpy's fancy indexing of
the same array would."""

import h5py
import numpy as np
import pytest

from pipeline_lib.images import read_images


@pytest.mark.parametrize(
    "indices",
    [[5, 1, 1, 9, 2, 3, 4, 30, 0], [7], list(range(12, 20)), [31, 0], []],
    ids=["repeats-runs-gaps", "one", "one-run", "ends", "none"],
)
def test_read_images_equals_fancy_indexing(tmp_path, indices):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 4, 4, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 4, 4, 3))
    with h5py.File(tmp_path / "f.h5", "r") as f:
        got = read_images(f["images"], np.array(indices, dtype=np.int64))
    assert got.dtype == np.uint8 and got.shape == (len(indices), 4, 4, 3)
    np.testing.assert_array_equal(got, images[np.array(indices, dtype=np.int64)])
