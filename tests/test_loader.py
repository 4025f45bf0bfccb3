"""BatchLoader: the same batches as plain indexing, errors surface in the training loop, no thread is left behind."""
import threading

import numpy as np
import pytest
import torch

from sadh.train.loader import BatchLoader

CPU = torch.device("cpu")


def _loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sadh-batch-loader"]


def test_batches_match_plain_indexing_of_a_memmap(tmp_path) -> None:
    rng = np.random.default_rng(0)
    images = np.lib.format.open_memmap(tmp_path / "cache.npy", mode="w+", dtype=np.uint8, shape=(23, 5, 5, 3))
    images[:] = rng.integers(0, 256, images.shape, dtype=np.uint8)
    labels = torch.from_numpy(rng.integers(0, 2, (23, 4)).astype(np.float32))
    order = rng.permutation(23)
    with BatchLoader(images, labels, order, batch_size=4, steps=5, device=CPU) as loader:
        got = list(loader)
    assert len(got) == 5
    for b, (x, y) in enumerate(got):
        idx = np.sort(order[b * 4 : (b + 1) * 4])
        assert x.dtype == torch.uint8 and np.array_equal(x.numpy(), images[idx])
        assert torch.equal(y, labels[idx])


def test_a_failing_gather_raises_in_the_loop() -> None:
    images = np.zeros((4, 2, 2, 3), np.uint8)
    order = np.array([0, 1, 2, 9])  # 9 is out of range: the second batch cannot be gathered
    with BatchLoader(images, torch.zeros(4, 1), order, batch_size=2, steps=2, device=CPU) as loader:
        with pytest.raises(IndexError):
            list(loader)


def test_leaving_early_stops_the_thread() -> None:
    images = np.zeros((64, 2, 2, 3), np.uint8)
    with BatchLoader(images, torch.zeros(64, 1), np.arange(64), batch_size=1, steps=64, device=CPU, depth=1) as loader:
        next(iter(loader))
        assert _loader_threads()
    assert not _loader_threads()
