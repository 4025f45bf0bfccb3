"""SADH, DPSH and CSQ losses against explicit-loop reference values on tiny inputs."""

import math

import pytest
import torch

from sadh.train.baselines import CSQCentres, csq_loss, dpsh_loss, sylvester_hadamard
from sadh.train.backbones.small_cnn import SmallCNN
from sadh.train.dictionary import Dictionaries, build_dictionaries
from sadh.train.losses import SadhWeights, cosine_matrix, label_margin, label_net_loss, sadh_loss
from sadh.train.model import ImageHashNet, ImageOutput, LabelNet, LabelOutput

Y = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # 3 items, 2 classes, multi-label in the middle
THETA0 = 0.2


def rows(t: torch.Tensor) -> list[list[float]]:
    """A tensor as nested Python floats (the references below never touch torch maths)."""
    return t.detach().double().tolist()


def ref_cos(a: list[float], b: list[float]) -> float:
    """Cosine similarity by hand; 0 for a zero vector."""
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return 0.0 if na == 0 or nb == 0 else sum(x * y for x, y in zip(a, b)) / (na * nb)


def ref_sim(ya: list[float], yb: list[float]) -> float:
    """1 if the two label vectors share a label."""
    return 1.0 if sum(x * y for x, y in zip(ya, yb)) > 0 else 0.0


def ref_J(a: torch.Tensor, y: torch.Tensor) -> float:
    """Fixed-margin contrastive loss J(a), explicit loops."""
    a, y, total = rows(a), rows(y), 0.0
    for i in range(len(a)):
        for j in range(len(a)):
            c, s = ref_cos(a[i], a[j]), ref_sim(y[i], y[j])
            total += s * max(0.0, THETA0 - c) + (1 - s) * max(0.0, THETA0 + c)
    return total / len(a) ** 2


def ref_margin_loss(a, other, a_t, other_t, y, y_other) -> float:
    """S(a) (other = a) or A(a, D) (other = D): hinge around max(0, cos(a_t, other_t)), explicit loops."""
    a, other, a_t, other_t, y, y_other = map(rows, (a, other, a_t, other_t, y, y_other))
    total = 0.0
    for i in range(len(a)):
        for m in range(len(other)):
            margin = max(0.0, ref_cos(a_t[i], other_t[m]))
            c, s = ref_cos(a[i], other[m]), ref_sim(y[i], y_other[m])
            total += s * max(0.0, margin - c) + (1 - s) * max(0.0, c - margin)
    return total / (len(a) * len(other))


def ref_quant(u: torch.Tensor) -> float:
    """mean((u − sign u)²), explicit loops."""
    vals = [x for r in rows(u) for x in r]
    return sum((x - (x > 0) + (x < 0)) ** 2 for x in vals) / len(vals)


def ref_bce_logits(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean binary cross-entropy with logits, explicit loops."""
    pairs = [(z, t) for lr, yr in zip(rows(logits), rows(y)) for z, t in zip(lr, yr)]
    return sum(-(t * math.log(1 / (1 + math.exp(-z))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-z)))) for z, t in pairs) / len(pairs)


def random_outputs(gen: torch.Generator) -> tuple[ImageOutput, LabelOutput, Dictionaries]:
    """Tiny random image outputs, label-network targets and a 3-entry dictionary."""
    u = torch.tanh(torch.randn(3, 4, generator=gen))
    out = ImageOutput(torch.randn(3, 5, generator=gen), u, torch.randn(3, 2, generator=gen))
    target = LabelOutput(torch.randn(3, 5, generator=gen), torch.tanh(torch.randn(3, 4, generator=gen)), torch.zeros(3, 2))
    dicts = Dictionaries(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), torch.randn(3, 5, generator=gen), torch.randn(3, 4, generator=gen))
    return out, target, dicts


def test_cosine_matrix_matches_loops_and_is_zero_safe() -> None:
    a = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 3.0]], requires_grad=True)
    b = torch.tensor([[2.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
    cos = cosine_matrix(a, b)
    expected = [[ref_cos(x, z) for z in rows(b)] for x in rows(a)]
    assert torch.allclose(cos.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6)
    cos.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_label_net_loss_matches_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    out = LabelOutput(torch.randn(3, 5, generator=gen), torch.tanh(torch.randn(3, 4, generator=gen)), torch.randn(3, 2, generator=gen))
    total, stats = label_net_loss(out, Y)
    recon = (2 / 2) * sum((t - p) ** 2 for yr, pr in zip(rows(Y), rows(out.y_hat)) for t, p in zip(yr, pr))  # Σ over the batch
    expected = {"code": ref_J(out.u, Y), "feat": ref_J(out.f, Y), "recon": recon, "quant": 0.1 * ref_quant(out.u)}
    for key, value in expected.items():
        assert float(stats[key]) == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert float(total) == pytest.approx(sum(expected.values()), rel=1e-5)
    assert float(stats["total"]) == pytest.approx(float(total))


def test_contrastive_margin_hand_values() -> None:
    # Two dissimilar items with orthogonal codes: each off-diagonal pair costs θ0 (cos 0 > −θ0); diagonal is free.
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = LabelOutput(u, u, torch.zeros(2, 2))
    _, stats = label_net_loss(out, torch.eye(2))
    assert float(stats["code"]) == pytest.approx(2 * THETA0 / 4)


def test_label_margin_auto_is_feasible() -> None:
    # "auto" keeps the spec's 0.2 while c mutually exclusive classes can all reach cos < -0.2 (c <= 5 here),
    # then 0.9 / (c - 1), below the bound -1 / (c - 1) on their mean pairwise cosine; numbers pass through.
    assert [label_margin("auto", c) for c in (1, 2, 5, 10, 21, 81)] == pytest.approx([0.2, 0.2, 0.2, 0.1, 0.045, 0.01125])
    assert label_margin(0.3, 10) == 0.3
    codes = torch.eye(10) - 0.1  # a regular simplex: every pair at cosine -1/9
    out = LabelOutput(codes, codes, torch.zeros(10, 10))
    assert float(label_net_loss(out, torch.eye(10), margin=label_margin("auto", 10))[1]["code"]) == 0.0
    assert float(label_net_loss(out, torch.eye(10), margin=0.2)[1]["code"]) > 0.0


def test_sadh_loss_matches_reference() -> None:
    out, target, dicts = random_outputs(torch.Generator().manual_seed(1))
    w = SadhWeights(lam=1.5, alpha=0.7, beta=0.3, eta=2.0)
    total, stats = sadh_loss(out, Y, target, dicts, w)
    expected = {
        "sym_code": ref_margin_loss(out.u, out.u, target.u, target.u, Y, Y),
        "asym_code": ref_margin_loss(out.u, dicts.U, target.u, dicts.U, Y, dicts.labels),
        "sym_feat": ref_margin_loss(out.f, out.f, target.f, target.f, Y, Y),
        "asym_feat": ref_margin_loss(out.f, dicts.F, target.f, dicts.F, Y, dicts.labels),
        "quant": ref_quant(out.u),
        "cls": ref_bce_logits(out.logits, Y),
    }
    for key, value in expected.items():
        assert float(stats[key]) == pytest.approx(value, rel=1e-5, abs=1e-6), key
    weighted = (1.5 * (expected["sym_code"] + expected["asym_code"]) + 0.7 * (expected["sym_feat"] + expected["asym_feat"])
                + 0.3 * expected["quant"] + 2.0 * expected["cls"])
    assert float(total) == pytest.approx(weighted, rel=1e-5)


def test_margin_is_clipped_at_zero() -> None:
    # Dissimilar pair, label-net codes opposite (cos −1 → margin 0), image codes at cos 0.5:
    # each off-diagonal pair costs 0.5 − 0 (1.5 without the clip), the diagonal costs 0 → S = 2·0.5 / 4.
    u = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(0.75)]])
    t = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    y = torch.eye(2)
    out = ImageOutput(torch.ones(2, 3), u, torch.zeros(2, 2))
    target = LabelOutput(torch.ones(2, 3), t, torch.zeros(2, 2))
    dicts = Dictionaries(y, torch.ones(2, 3), t)
    _, stats = sadh_loss(out, y, target, dicts, SadhWeights())
    assert float(stats["sym_code"]) == pytest.approx(0.25, abs=1e-6)
    # Dictionary U = t: (0,0) margin 1, cos 1 → 0; (0,1) margin 0, cos −1 → 0; (1,0) margin 0, cos 0.5 → 0.5;
    # (1,1) similar, margin 1, cos −0.5 → 1.5. A = 2 / 4.
    assert float(stats["asym_code"]) == pytest.approx(0.5, abs=1e-6)


def test_zero_code_gives_no_nan() -> None:
    out, target, dicts = random_outputs(torch.Generator().manual_seed(2))
    u = out.u.clone()
    u[1] = 0
    u.requires_grad_(True)
    total, _ = sadh_loss(ImageOutput(out.f, u, out.logits), Y, target, dicts, SadhWeights())
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(u.grad).all()


def test_gradients_reach_image_net_never_label_net() -> None:
    torch.manual_seed(0)
    label_net = LabelNet(num_classes=2, bits=8, hidden=16, feat_dim=12)
    image_net = ImageHashNet(SmallCNN((4, 8)), bits=8, num_classes=2, feat_dim=12)
    dicts = build_dictionaries(label_net, Y)
    target = label_net(Y)  # deliberately computed with grad enabled: sadh_loss must cut it
    total, _ = sadh_loss(image_net(torch.randn(3, 3, 16, 16)), Y, target, dicts, SadhWeights())
    total.backward()
    assert all(p.grad is None for p in label_net.parameters())
    assert not any(t.requires_grad for t in dicts)
    for layer in (image_net.code, image_net.feature, image_net.classifier):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in image_net.backbone.parameters())


def test_sadh_loss_runs_in_float32_under_autocast() -> None:
    out, target, dicts = random_outputs(torch.Generator().manual_seed(3))
    half = ImageOutput(*(t.bfloat16() for t in out))
    reference, _ = sadh_loss(ImageOutput(*(t.float() for t in half)), Y, target, dicts, SadhWeights())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _ = sadh_loss(half, Y, target, dicts, SadhWeights())
    assert mixed.dtype == torch.float32
    assert float(mixed) == pytest.approx(float(reference), rel=1e-6)


def test_dpsh_loss_matches_reference_and_rewards_right_codes() -> None:
    u = torch.tanh(torch.randn(3, 4, generator=torch.Generator().manual_seed(4)))
    total, stats = dpsh_loss(u, Y, eta=0.5)
    ur, yr = rows(u), rows(Y)
    lik = 0.0
    for i in range(3):
        for j in range(3):
            theta = 0.5 * sum(a * b for a, b in zip(ur[i], ur[j]))
            lik += math.log(1 + math.exp(theta)) - ref_sim(yr[i], yr[j]) * theta
    assert float(stats["likelihood"]) == pytest.approx(lik / 9, rel=1e-5)
    assert float(total) == pytest.approx(lik / 9 + 0.5 * ref_quant(u), rel=1e-5)
    y = torch.eye(2).repeat(2, 1)
    good = torch.tensor([[1.0] * 4, [-1.0] * 4] * 2) * 0.9
    bad = torch.tensor([[1.0, -1.0] * 2, [1.0, -1.0] * 2] * 2) * 0.9
    assert dpsh_loss(good, y)[0] < dpsh_loss(bad, y)[0]


def test_csq_centres_hadamard_rows() -> None:
    bits = 16
    c = CSQCentres(bits, 10)
    assert c.hadamard
    assert set(c.centres.unique().tolist()) == {-1.0, 1.0}
    assert len(c.centres.unique(dim=0)) == 10
    h = c.centres[:bits]
    dist = (h[:, None, :] != h[None, :, :]).sum(-1)
    assert (dist[~torch.eye(len(h), dtype=torch.bool)] == bits // 2).all()
    assert torch.equal(torch.from_numpy(sylvester_hadamard(4)) @ torch.from_numpy(sylvester_hadamard(4)).T, 4 * torch.eye(4))


def test_csq_centres_random_when_too_many_classes() -> None:
    c = CSQCentres(8, 20, seed=5)
    assert not c.hadamard
    assert set(c.centres.unique().tolist()) == {-1.0, 1.0}
    assert len(c.centres.unique(dim=0)) == 20
    assert torch.equal(c.centres, CSQCentres(8, 20, seed=5).centres)


def test_csq_multilabel_centre_is_sign_of_mean_with_seeded_ties() -> None:
    c = CSQCentres(16, 4, seed=7)
    both = c.targets(torch.tensor([[1.0, 1.0, 0.0, 0.0]]))[0]
    a, b = c.centres[0], c.centres[1]
    agree = a == b
    assert torch.equal(both[agree], a[agree])
    assert torch.equal(both[~agree], c.tie_break[~agree]) and (~agree).any()
    assert torch.equal(c.targets(torch.eye(4)), c.centres)


def test_csq_loss_matches_reference_and_rewards_right_codes() -> None:
    c = CSQCentres(8, 2)
    u = torch.tanh(torch.randn(3, 8, generator=torch.Generator().manual_seed(6)))
    total, stats = csq_loss(u, Y, c, lam=0.5)
    targets = rows(c.targets(Y))
    bce = [-(((t + 1) / 2) * math.log((x + 1) / 2) + (1 - (t + 1) / 2) * math.log(1 - (x + 1) / 2))
           for ur, tr in zip(rows(u), targets) for x, t in zip(ur, tr)]
    assert float(stats["centre"]) == pytest.approx(sum(bce) / len(bce), rel=1e-5)
    assert float(total) == pytest.approx(sum(bce) / len(bce) + 0.5 * ref_quant(u), rel=1e-5)
    right = 0.9 * c.targets(Y)
    assert csq_loss(right, Y, c)[0] < csq_loss(-right, Y, c)[0]
