"""Peer methods on the same harness and backbone: DPSH (pairwise likelihood) and CSQ (hash centres)."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sadh.sdk.errors import SadhError
from sadh.train.losses import as_stats, fp32_region, label_similarity, matmul_fp32, quantisation


def dpsh_loss(u: Tensor, y: Tensor, eta: float = 0.1) -> tuple[Tensor, dict[str, Tensor]]:
    """DPSH: mean_ij[log(1+e^θ_ij) − s_ij·θ_ij] over the batch's pairs, θ = u·uᵀ/2, plus eta·mean((u − sign u)²).

    u is the shared tanh code head (Li et al. 2016 use a linear output: measured weaker here, see docs/training.md)."""
    theta = 0.5 * matmul_fp32(u, u)
    likelihood = (F.softplus(theta) - label_similarity(y, y) * theta).mean()
    quant = quantisation(u)
    total = likelihood + eta * quant
    return total, as_stats(likelihood=likelihood, quant=quant, total=total)


def sylvester_hadamard(n: int) -> np.ndarray:
    """The n×n Sylvester Hadamard matrix (n a power of two), entries ±1."""
    if n < 1 or n & (n - 1):
        raise SadhError(f"a Sylvester Hadamard matrix needs a power-of-two size, got {n}")
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def bernoulli_centres(bits: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """num_classes distinct random ±1 centres of length bits."""
    if num_classes > 2**bits:
        raise SadhError(f"cannot draw {num_classes} distinct {bits}-bit hash centres; use more bits")
    centres = np.empty((0, bits), dtype=np.float32)
    while len(centres) < num_classes:
        draw = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(num_classes, bits))
        centres = np.unique(np.concatenate([centres, draw]), axis=0)
    return rng.permutation(centres)[:num_classes]


class CSQCentres:
    """CSQ hash centres: Hadamard rows (and their negations) when bits is a power of two and 2·bits ≥ classes,
    else distinct random ±1 vectors; a multi-label item's centre is the sign of its classes' mean centre."""

    def __init__(self, bits: int, num_classes: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.hadamard = bits & (bits - 1) == 0 and num_classes <= 2 * bits
        if self.hadamard:
            h = sylvester_hadamard(bits)
            centres = np.concatenate([h, -h])[:num_classes]
        else:
            centres = bernoulli_centres(bits, num_classes, rng)
        self.centres = torch.from_numpy(np.ascontiguousarray(centres, dtype=np.float32))
        self.tie_break = torch.from_numpy(rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=bits))

    def to(self, device: torch.device) -> "CSQCentres":
        """Move the centres to `device` (once, not every step); returns self."""
        self.centres, self.tie_break = self.centres.to(device), self.tie_break.to(device)
        return self

    def targets(self, y: Tensor) -> Tensor:
        """Per-item centres (n, bits) for label vectors y (n, c); ties (a zero mean) take the seeded tie-break."""
        summed = matmul_fp32(y, self.centres.T.to(y.device))
        return torch.where(summed == 0, self.tie_break.to(y.device), torch.sign(summed))


def csq_loss(u: Tensor, y: Tensor, centres: CSQCentres, lam: float = 1e-4) -> tuple[Tensor, dict[str, Tensor]]:
    """CSQ: BCE of (u+1)/2 against (centre+1)/2, plus lam·mean((u − sign u)²)."""
    target = centres.targets(y)
    with fp32_region(u):
        centre = F.binary_cross_entropy((u.float() + 1) / 2, (target + 1) / 2)
    quant = quantisation(u)
    total = centre + lam * quant
    return total, as_stats(centre=centre, quant=quant, total=total)
