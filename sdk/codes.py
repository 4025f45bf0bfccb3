"""Binary hash codes: pack to / unpack from bytes (np.packbits big-endian order) and Hamming distances.

Bit convention: a packed byte holds 8 code bits, the first bit in the most significant position
(exactly `np.packbits(..., bitorder="big")`). A bit is 1 for a positive float (> 0), True, or 1;
it is 0 for a float <= 0 (so 0.0 and -0.0 map to 0), False, or 0.
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import SadhError
from .popcount import popcount
from .printable import value_text


def asarray(x: np.ndarray) -> np.ndarray:
    """np.asarray(x); a ragged sequence raises ValueError on every numpy (1.23, JetPack 6's, made an object array)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", getattr(np, "exceptions", np).VisibleDeprecationWarning)
        try:
            return np.asarray(x)
        except getattr(np, "exceptions", np).VisibleDeprecationWarning:
            raise ValueError("ragged nested sequence") from None

BITS_STEP = 8  # a code is whole bytes (packed 8 bits to a byte)
MAX_TRAINED_BITS = 256  # the longest code `sadh.train` builds
MAX_INDEX_BITS = 1024  # the longest code an index file, a model's metadata and the encoder hold (other models' codes too)


def bits_fit(bits: object, most: int | None = MAX_INDEX_BITS) -> bool:
    """Whether `bits` is a code length: an integer multiple of BITS_STEP, at most `most` (None: no limit)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        return False
    return bits >= BITS_STEP and bits % BITS_STEP == 0 and (most is None or bits <= most)


def bits_rule(most: int | None = MAX_INDEX_BITS) -> str:
    """The rule of `bits_fit(bits, most)` in words."""
    return f"a positive multiple of {BITS_STEP}" if most is None else f"a multiple of {BITS_STEP} from {BITS_STEP} to {most}"


def check_bits(bits: object, most: int | None = MAX_INDEX_BITS, what: str = "bits") -> int:
    """`bits` as an int if `bits_fit(bits, most)`, else SadhError stating the rule (`what`: how it names the value)."""
    if not bits_fit(bits, most):
        raise SadhError(f"{what} must be {bits_rule(most)}, got {value_text(bits)}")
    return int(bits)  # type: ignore[arg-type]


def as_array(x: np.ndarray, what: str) -> np.ndarray:
    """np.asarray(x), with a ragged sequence (rows of different lengths) as a SadhError."""
    try:
        return asarray(x)
    except ValueError:
        raise SadhError(f"{what} must be an array of equal-length rows, got a ragged sequence") from None


def _as_bits(x: np.ndarray) -> np.ndarray:
    """Validate ±1-float / {0,1}-int / bool codes of shape (n, bits) and return them as bools."""
    if x.dtype == np.bool_:
        return x
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise SadhError("codes contain NaN or inf; pass finite ±1 floats, {0,1} ints or bools")
        return x > 0
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 1):
            raise SadhError("integer codes must contain only 0 and 1; for ±1 codes pass floats")
        return x.astype(np.bool_)
    raise SadhError(f"codes must be float, integer or bool, got dtype {x.dtype}")


def pack_codes(x: np.ndarray) -> np.ndarray:
    """Pack codes (n, bits) of ±1 floats (sign: > 0 → 1), {0,1} ints or bools into uint8 (n, bits/8)."""
    x = as_array(x, "codes")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise SadhError(f"codes must be 1-D or 2-D (n, bits), got {x.ndim}-D")
    check_bits(x.shape[1], None, "code length (bits)")
    return np.packbits(_as_bits(x), axis=1, bitorder="big")


def check_packed(packed: np.ndarray, nbytes: int | None = None, what: str = "codes") -> np.ndarray:
    """Return `packed` as a C-contiguous uint8 (n, nbytes) array (1-D means one code) or raise SadhError."""
    packed = as_array(packed, f"packed {what}")
    if packed.dtype != np.uint8:
        raise SadhError(f"packed {what} must be uint8 (use pack_codes), got dtype {packed.dtype}")
    if packed.ndim == 1:
        packed = packed[None, :]
    if packed.ndim != 2:
        raise SadhError(f"packed {what} must be 1-D or 2-D (n, bytes), got {packed.ndim}-D")
    if nbytes is not None and packed.shape[1] != nbytes:
        raise SadhError(f"packed {what} have {packed.shape[1]} bytes per code, expected {nbytes} ({nbytes * 8} bits)")
    if packed.shape[1] == 0:
        raise SadhError(f"packed {what} have 0 bytes per code")
    return np.ascontiguousarray(packed)


def unpack_codes(packed: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Unpack uint8 (n, bytes) codes to uint8 {0,1} (n, bits); `bits` defaults to 8 * bytes."""
    packed = check_packed(packed)
    nbits = packed.shape[1] * 8
    if bits is not None and bits != nbits:
        raise SadhError(f"bits={bits} does not match packed width {packed.shape[1]} bytes ({nbits} bits)")
    return np.unpackbits(packed, axis=1, bitorder="big")


def hamming_distance(a_packed: np.ndarray, b_packed: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances between packed codes a (n, B) and b (m, B) as int32 (n, m)."""
    a = check_packed(a_packed, what="codes a")
    b = check_packed(b_packed, a.shape[1], what="codes b")
    out = np.zeros((a.shape[0], b.shape[0]), np.int32)
    for j in range(a.shape[1]):
        out += popcount(a[:, j, None] ^ b[None, :, j])
    return out
