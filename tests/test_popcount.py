"""The numpy-1.x popcount fallback is exact: equal to Python's int.bit_count and to the fast path on the same inputs."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sadh.sdk.popcount import popcount, popcount_swar

UNSIGNED = [np.uint8, np.uint16, np.uint32, np.uint64]


def bit_counts(x: np.ndarray) -> np.ndarray:
    """Reference: Python's own bit count of every element."""
    return np.array([int(v).bit_count() for v in x.ravel()], np.int64).reshape(x.shape)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(st.sampled_from(UNSIGNED), hnp.array_shapes(min_dims=1, max_dims=3, max_side=9)))
def test_fallback_is_exact_and_equals_the_fast_path(x):
    expected = bit_counts(x)
    slow, fast = popcount_swar(x), popcount(x)  # `popcount` is numpy's bitwise_count where numpy has it
    assert slow.dtype == np.uint8 and slow.shape == x.shape
    assert np.array_equal(slow, expected)
    assert np.array_equal(fast, slow)


@pytest.mark.parametrize("dtype", UNSIGNED)
def test_fallback_extremes_and_out(dtype):
    info = np.iinfo(dtype)
    x = np.array([0, 1, info.max, info.max - 1, info.max // 2 + 1, int("5" * (info.bits // 4), 16)], dtype)
    out = np.full(x.shape, 99, np.uint16)  # as the index writes into its distance buffers
    assert popcount_swar(x, out=out) is out
    assert out.tolist() == bit_counts(x).tolist() == [0, 1, info.bits, info.bits - 1, 1, info.bits // 2]
    big = np.random.default_rng(0).integers(0, info.max, 100_000, dtype=dtype, endpoint=True)
    assert np.array_equal(popcount_swar(big), popcount(big))
    assert np.array_equal(popcount_swar(big[::3]), bit_counts(big[::3]))  # strided input
    column = np.zeros((big.size, 2), np.int32)[:, 1]  # a strided output
    assert popcount_swar(big, out=column) is column and np.array_equal(column, popcount(big))


def test_fallback_refuses_signed_input():
    with pytest.raises(TypeError, match="unsigned"):
        popcount_swar(np.array([-1], np.int64))
