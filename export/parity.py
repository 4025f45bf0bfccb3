"""Parity of an exported model against the torch reference: code differences and sign-bit agreement."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sdk.errors import SadhError


@dataclass(frozen=True)
class Parity:
    """How close exported codes are to the torch codes on the same images."""

    max_abs_diff: float
    bit_agreement: float
    images: int

    def summary(self) -> str:
        """One line, e.g. 'bits 99.98% identical, max |diff| 3.1e-06 (256 images)'."""
        return f"bits {self.bit_agreement:.2%} identical, max |diff| {self.max_abs_diff:.2g} ({self.images} images)"


def compare_codes(reference: np.ndarray, codes: np.ndarray) -> Parity:
    """Compare continuous codes (n, bits) from the exported model with the reference codes."""
    if reference.shape != codes.shape:
        raise SadhError(f"exported model gives codes of shape {codes.shape}, torch gives {reference.shape}")
    return Parity(
        max_abs_diff=float(np.abs(reference - codes).max()),
        bit_agreement=float(np.mean((reference > 0) == (codes > 0))),
        images=len(reference),
    )


def require_parity(parity: Parity, threshold: float, what: str) -> None:
    """Raise SadhError when the codes are not finite (NaN/inf) or fewer than `threshold` of the sign bits agree."""
    if not np.isfinite(parity.max_abs_diff):
        raise SadhError(
            f"{what} fails the parity check: its codes or torch's contain NaN or inf (max |diff| {parity.max_abs_diff}); "
            "the checkpoint's weights are probably broken (retrain, or export an earlier checkpoint)"
        )
    if not parity.bit_agreement >= threshold:
        raise SadhError(
            f"{what} fails the parity check: {parity.summary()}, need >= {threshold:.2%} "
            "(lower the threshold only if you accept the accuracy loss)"
        )
