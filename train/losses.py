"""SADH losses: the label network's contrastive loss and the margin-scalable image network loss (all in float32)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sadh.train.dictionary import Dictionaries
from sadh.train.model import LabelOutput, ImageOutput

LABEL_MARGIN = 0.2
LABEL_QUANT_WEIGHT = 0.1


@dataclass
class SadhWeights:
    """Stage-2 loss weights: λ (code terms), α (feature terms), β (quantisation), η (classification)."""

    lam: float = 1.0
    alpha: float = 1.0
    beta: float = 0.01
    eta: float = 0.1


def fp32_region(t: Tensor) -> torch.autocast:
    """A region where autocast is off on t's device, so matmuls and BCE run in float32."""
    return torch.autocast(t.device.type, enabled=False)


def matmul_fp32(a: Tensor, b: Tensor) -> Tensor:
    """a @ b.T in float32, also inside an autocast region (which would otherwise run it in bf16/fp16)."""
    with fp32_region(a):
        return a.float() @ b.float().T


def cosine_matrix(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pairwise cosine similarities (n, m) of rows of a (n, d) and b (m, d); a zero row gives 0, never NaN."""
    a, b = a.float(), b.float()
    a = a * torch.rsqrt((a * a).sum(dim=1, keepdim=True).clamp_min(eps * eps))
    b = b * torch.rsqrt((b * b).sum(dim=1, keepdim=True).clamp_min(eps * eps))
    return matmul_fp32(a, b)


def as_stats(**terms: Tensor) -> dict[str, Tensor]:
    """Loss terms, detached, for logging (left on the device: float() on a GPU tensor waits for the GPU)."""
    return {k: v.detach() for k, v in terms.items()}


def label_similarity(y: Tensor, labels: Tensor) -> Tensor:
    """s_ij = 1 if y_i and labels_j share at least one label, else 0 (float32, (n, m))."""
    return (matmul_fp32(y, labels) > 0).float()


def pair_hinge(cos: Tensor, s: Tensor, pos_margin: Tensor | float, neg_margin: Tensor | float) -> Tensor:
    """mean[s·max(0, pos_margin − cos) + (1−s)·max(0, cos − neg_margin)]."""
    return (s * F.relu(pos_margin - cos) + (1 - s) * F.relu(cos - neg_margin)).mean()


def quantisation(u: Tensor) -> Tensor:
    """mean((u − sign u)²), in float32."""
    u = u.float()
    return (u - torch.sign(u)).pow(2).mean()


def label_margin(setting: float | str, num_classes: int) -> float:
    """Stage-1 margin θ0: a number as given; "auto": the spec's 0.2, capped at 0.9/(c−1).

    J asks every pair of classes that share no label for cos < −θ0, but c mutually exclusive classes have a
    mean pairwise cosine ≥ −1/(c−1); above that bound the hinge cannot be met and leaves some class codes closer
    together (16 bits, Fashion-MNIST: closest targets 4-5 bits apart, 6 below the bound; bench/label_space_bench.py).
    """
    if setting != "auto":
        return float(setting)
    return LABEL_MARGIN if num_classes <= 2 else min(LABEL_MARGIN, 0.9 / (num_classes - 1))


def contrastive(a: Tensor, s: Tensor, margin: float = LABEL_MARGIN) -> Tensor:
    """J(a): fixed-margin contrastive loss over all batch pairs, diagonal included."""
    return pair_hinge(cosine_matrix(a, a), s, margin, -margin)


def margin_scalable(a: Tensor, other: Tensor, a_target: Tensor, other_target: Tensor, s: Tensor) -> Tensor:
    """Hinge of cos(a, other) around the label network's own margin max(0, cos(a_t, other_t)).

    Symmetric S(a): other = a, other_target = a_t. Asymmetric A(a, D): other = other_target = D.
    """
    margin = F.relu(cosine_matrix(a_target, other_target))
    return pair_hinge(cosine_matrix(a, other), s, margin, margin)


def label_net_loss(
    out: LabelOutput, y: Tensor, margin: float = LABEL_MARGIN, quant_weight: float = LABEL_QUANT_WEIGHT
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_lab = J(u_t) + J(f_t) + (2/c)·Σ_i‖y_i − ŷ_t,i‖² + quant_weight·mean((u_t − sign u_t)²)."""
    y = y.float()
    s = label_similarity(y, y)
    terms = {
        "code": contrastive(out.u, s, margin),
        "feat": contrastive(out.f, s, margin),
        "recon": (2.0 / y.shape[1]) * (y - out.y_hat.float()).pow(2).sum(),
        "quant": quant_weight * quantisation(out.u),
    }
    total = sum(terms.values())
    return total, as_stats(**terms, total=total)


def sadh_loss(
    out: ImageOutput, y: Tensor, target: LabelOutput, dicts: Dictionaries, w: SadhWeights
) -> tuple[Tensor, dict[str, Tensor]]:
    """λ[S(u)+A(u,U)] + α[S(f)+A(f,F)] + β·mean((u−sign u)²) + η·BCE(logits, y); target is detached here."""
    y = y.float()
    t_u, t_f = target.u.detach().float(), target.f.detach().float()
    s_batch = label_similarity(y, y)
    s_dict = label_similarity(y, dicts.labels.to(y.device))
    U, Fd = dicts.U.detach().to(y.device), dicts.F.detach().to(y.device)
    terms = {
        "sym_code": margin_scalable(out.u, out.u, t_u, t_u, s_batch),
        "asym_code": margin_scalable(out.u, U, t_u, U, s_dict),
        "sym_feat": margin_scalable(out.f, out.f, t_f, t_f, s_batch),
        "asym_feat": margin_scalable(out.f, Fd, t_f, Fd, s_dict),
        "quant": quantisation(out.u),
        "cls": F.binary_cross_entropy_with_logits(out.logits.float(), y),
    }
    total = (
        w.lam * (terms["sym_code"] + terms["asym_code"])
        + w.alpha * (terms["sym_feat"] + terms["asym_feat"])
        + w.beta * terms["quant"]
        + w.eta * terms["cls"]
    )
    return total, as_stats(**terms, total=total)
