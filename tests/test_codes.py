"""pack_codes / unpack_codes / hamming_distance against numpy references."""
import numpy as np
import pytest

from sadh.sdk.codes import MAX_INDEX_BITS, MAX_TRAINED_BITS, bits_fit, hamming_distance, pack_codes, unpack_codes
from sadh.sdk.errors import SadhError
from sadh.sdk.index import HammingIndex
from sadh.train.config import TrainConfig


@pytest.mark.parametrize("bits", [8, 16, 24, 64, 128])
def test_pack_matches_packbits_for_all_input_kinds(bits):
    rng = np.random.default_rng(bits)
    b = rng.integers(0, 2, (13, bits)).astype(bool)
    expected = np.packbits(b, axis=1)
    assert np.array_equal(pack_codes(b), expected)
    assert np.array_equal(pack_codes(b.astype(np.int64)), expected)
    assert np.array_equal(pack_codes(b.astype(np.uint8)), expected)
    signs = np.where(b, 1.0, -1.0) * rng.uniform(0.1, 3, b.shape)
    assert np.array_equal(pack_codes(signs.astype(np.float32)), expected)
    assert pack_codes(b).dtype == np.uint8


def test_sign_convention_zero_is_zero_bit():
    x = np.array([1e-30, 0.0, -0.0, -1e-30, 2.0, -2.0, 0.5, 0.0])
    assert np.array_equal(unpack_codes(pack_codes(x))[0], [1, 0, 0, 0, 1, 0, 1, 0])


def test_bit_order_is_big_endian():
    assert pack_codes(np.array([1, 0, 0, 0, 0, 0, 0, 0]))[0, 0] == 0x80
    assert pack_codes(np.array([0, 0, 0, 0, 0, 0, 0, 1]))[0, 0] == 0x01


def test_one_dim_is_one_code_and_roundtrip():
    b = np.random.default_rng(0).integers(0, 2, 32)
    packed = pack_codes(b)
    assert packed.shape == (1, 4)
    assert np.array_equal(unpack_codes(packed, 32)[0], b)
    assert np.array_equal(unpack_codes(packed[0]), b[None])


@pytest.mark.parametrize(
    "bad",
    [
        np.array([[1.0, np.nan] * 4]),
        np.array([[np.inf] * 8]),
        np.array([[0, 1, 2, 0, 0, 0, 0, 0]]),
        np.array([[0, -1, 1, 0, 0, 0, 0, 0]]),
        np.ones((2, 12)),
        np.ones((2, 0)),
        np.ones((2, 8, 1)),
        np.array([["a"] * 8]),
        [[1.0] * 8, [1.0] * 16],  # ragged rows
    ],
)
def test_pack_rejects_bad_input(bad):
    with pytest.raises(SadhError):
        pack_codes(bad)


def test_unpack_rejects_bad_input():
    with pytest.raises(SadhError, match="uint8"):
        unpack_codes(np.zeros((2, 2), np.int32))
    with pytest.raises(SadhError, match="bits"):
        unpack_codes(np.zeros((2, 2), np.uint8), bits=24)
    with pytest.raises(SadhError):
        unpack_codes(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(SadhError, match="ragged"):
        unpack_codes([np.zeros(2, np.uint8), np.zeros(3, np.uint8)])


def test_hamming_distance_all_pairs():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, (7, 40)), rng.integers(0, 2, (5, 40))
    expected = (a[:, None, :] != b[None, :, :]).sum(-1)
    d = hamming_distance(pack_codes(a), pack_codes(b))
    assert d.dtype == np.int32 and np.array_equal(d, expected)
    with pytest.raises(SadhError, match="bytes"):
        hamming_distance(pack_codes(a), np.zeros((2, 3), np.uint8))


def _accepts(make, bits: int) -> bool:
    try:
        make(bits)
    except SadhError:
        return False
    return True


def test_one_bits_rule_with_a_limit_per_place(tmp_path) -> None:
    """Training, the index and pack_codes apply sdk.codes' rule, each with its own limit (the index holds longer codes
    than training makes, e.g. other models'; packing has no limit)."""
    assert MAX_TRAINED_BITS < MAX_INDEX_BITS
    for bits in (0, 4, 8, 12, 16, 248, 256, 264, 512, 1024, 1032, 2048):
        assert _accepts(lambda b: TrainConfig(bits=b), bits) == bits_fit(bits, MAX_TRAINED_BITS), bits
        assert _accepts(HammingIndex, bits) == bits_fit(bits), bits
        assert _accepts(lambda b: pack_codes(np.ones((1, b))), bits) == bits_fit(bits, None), bits
    longest = HammingIndex(MAX_INDEX_BITS)
    longest.add(pack_codes(np.ones((2, MAX_INDEX_BITS))))
    longest.save(tmp_path / "long.sidx")
    assert HammingIndex.load(tmp_path / "long.sidx").bits == MAX_INDEX_BITS  # the file header takes the same rule


@pytest.mark.parametrize("bits", [10**5000, "9" * 5000], ids=["int", "text"])
def test_a_huge_code_length_is_a_one_line_error(bits) -> None:
    """A code length past Python's int-to-text limit is refused in one short line (not a ValueError from the message)."""
    for make in (lambda: TrainConfig(bits=bits), lambda: HammingIndex(bits)):
        with pytest.raises(SadhError) as e:
            make()
        assert "\n" not in str(e.value) and len(str(e.value)) < 300
