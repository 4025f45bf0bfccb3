"""Backbones, the SADH networks, weight loading and the label dictionaries."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from sadh.sdk.errors import SadhError
from sadh.sdk.preprocess import preprocess
from sadh.train.backbones import BACKBONES, backbone_entry, create_backbone, efficientnet_lite0_weights
from sadh.train.backbones.weights import read_state_dict
from sadh.train.dictionary import build_dictionaries
from sadh.train.model import ImageHashNet, LabelNet, create_model

SMALL_INPUTS = {"small_cnn": 28, "efficientnet_lite0": 32, "resnet18": 32, "resnet50": 32}
IMAGENET_CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    """The shipped ImageNet EfficientNet-Lite0, in eval mode."""
    return create_backbone("efficientnet_lite0", pretrained=True).eval()


@pytest.mark.parametrize("name", sorted(SMALL_INPUTS))
def test_backbone_and_model_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, bits=16, num_classes=3)
    size = SMALL_INPUTS[name]
    x = torch.randn(2, 3, size, size)
    feats = model.backbone.forward_features(x)
    assert feats.shape == (2, model.backbone.num_features)
    out = model(x)
    assert out.f.shape == (2, 2048) and out.u.shape == (2, 16) and out.logits.shape == (2, 3)
    assert out.u.abs().max() < 1
    backbone_entry(name).preprocess()  # the sdk accepts every backbone's preprocessing as is
    assert set(BACKBONES) == set(SMALL_INPUTS)


def test_encode_equals_forward_code() -> None:
    model = create_model("small_cnn", bits=32, num_classes=10).eval()
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.encode(x), model(x).u)


def test_efficientnet_lite0_loads_every_shipped_weight(lite0: nn.Module) -> None:
    shipped = read_state_dict(efficientnet_lite0_weights())
    state = lite0.state_dict()
    unused = set(shipped) - set(state)
    assert all(k.startswith("_fc.") for k in unused), sorted(unused)  # only the ImageNet classifier is left out
    assert set(state) <= set(shipped)
    assert all(torch.equal(state[k], shipped[k]) for k in state)


def test_efficientnet_lite0_recognises_a_cat(lite0: nn.Module) -> None:
    from skimage.data import chelsea  # a photo of a cat shipped with scikit-image

    shipped = read_state_dict(efficientnet_lite0_weights())
    x = torch.from_numpy(preprocess(chelsea()[:, :, ::-1], backbone_entry("efficientnet_lite0").preprocess()))
    with torch.no_grad():
        feats = lite0.forward_features(torch.cat([x, torch.zeros_like(x)]))
    logits = feats @ shipped["_fc.weight"].T + shipped["_fc.bias"]
    assert int(logits[0].argmax()) in IMAGENET_CAT_CLASSES
    assert not torch.allclose(feats[0], feats[1])


def test_resnet_pretrained_needs_a_path() -> None:
    with pytest.raises(SadhError, match="--backbone-weights"):
        create_backbone("resnet18", pretrained=True)
    with pytest.raises(SadhError, match="unknown backbone"):
        create_backbone("vgg16")


def test_resnet_names_match_torchvision() -> None:
    r18, r50 = create_backbone("resnet18").state_dict(), create_backbone("resnet50").state_dict()
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.num_batches_tracked", "layer4.1.bn2.bias"):
        assert key in r18, key
    assert "layer1.0.downsample.0.weight" not in r18
    for key in ("layer1.0.conv3.weight", "layer1.0.downsample.1.weight", "layer3.5.bn3.weight", "layer4.2.conv3.weight"):
        assert key in r50, key
    assert len(r18) == 120 and len(r50) == 318  # torchvision's counts without fc.weight/fc.bias


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_resnet18_weights_round_trip(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    source = create_backbone("resnet18")
    for module in source.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.running_mean)
            nn.init.uniform_(module.weight)
    state = {**source.state_dict(), "fc.weight": torch.randn(1000, 512), "fc.bias": torch.zeros(1000)}
    path = tmp_path / f"r18{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    loaded = create_backbone("resnet18", pretrained=str(path)).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_mismatched_weights_are_a_clear_error(tmp_path: Path) -> None:
    wrong_model = tmp_path / "small.pt"
    torch.save(create_backbone("small_cnn").state_dict(), wrong_model)
    with pytest.raises(SadhError, match=r"missing 120 keys \[bn1\.bias.*unexpected"):
        create_backbone("resnet18", pretrained=str(wrong_model))
    wrong_shape = tmp_path / "shape.pt"
    state = create_backbone("resnet18").state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, wrong_shape)
    with pytest.raises(SadhError, match=r"wrong shapes for \[conv1\.weight\]"):
        create_backbone("resnet18", pretrained=str(wrong_shape))
    not_tensors = tmp_path / "junk.pt"
    torch.save({"step": 3}, not_tensors)
    with pytest.raises(SadhError, match="not a plain state dict"):
        create_backbone("resnet18", pretrained=str(not_tensors))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(SadhError, match="cannot read"):
        create_backbone("resnet18", pretrained=str(garbage))
    with pytest.raises(SadhError, match="not found"):
        create_backbone("resnet18", pretrained=str(tmp_path / "absent.pt"))


@pytest.mark.parametrize("bits", [0, 4, 12, 264, -8, True, 16.0])
def test_bad_bits_rejected(bits: object) -> None:
    with pytest.raises(SadhError, match="bits must be a multiple of 8"):
        create_model("small_cnn", bits=bits, num_classes=10)


@pytest.mark.parametrize("num_classes", [0, -1, 2.5])
def test_bad_num_classes_rejected(num_classes: object) -> None:
    with pytest.raises(SadhError, match="num_classes"):
        create_model("small_cnn", bits=16, num_classes=num_classes)


@pytest.mark.parametrize("bits", [8, 256])
def test_bits_bounds_accepted(bits: int) -> None:
    assert create_model("small_cnn", bits=bits, num_classes=1).bits == bits


def test_dictionary_holds_exactly_the_unique_label_rows() -> None:
    torch.manual_seed(2)
    net = LabelNet(num_classes=3, bits=8, hidden=32, feat_dim=16).train()
    labels = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=np.uint8)
    dicts = build_dictionaries(net, labels)
    assert sorted(map(tuple, dicts.labels.tolist())) == sorted({tuple(r) for r in labels.tolist()})
    assert dicts.F.shape == (3, 16) and dicts.U.shape == (3, 8)
    assert not net.training and not dicts.F.requires_grad and not dicts.U.requires_grad
    with torch.no_grad():
        direct = net(dicts.labels)
    assert torch.equal(dicts.F, direct.f) and torch.equal(dicts.U, direct.u)
    with pytest.raises(SadhError, match="4 classes"):
        build_dictionaries(net, np.eye(4))


def test_heads_init_normal_001_zero_bias() -> None:
    torch.manual_seed(3)
    image_net = ImageHashNet(create_backbone("small_cnn"), bits=64, num_classes=10)
    label_net = LabelNet(num_classes=10, bits=64)
    linears = [m for net in (image_net, label_net) for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 7
    for layer in linears:
        assert torch.count_nonzero(layer.bias) == 0
        if layer.weight.numel() >= 20_000:
            assert float(layer.weight.detach().std()) == pytest.approx(0.01, rel=0.03)
            assert abs(float(layer.weight.detach().mean())) < 1e-3


def test_encode_exports_to_onnx() -> None:
    import io

    import onnxruntime as ort

    class Encoder(nn.Module):
        """The inference path as a module."""

        def __init__(self, model: ImageHashNet) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Continuous codes."""
            return self.model.encode(x)

    torch.manual_seed(4)
    model, x = create_model("small_cnn", bits=16, num_classes=4), torch.randn(2, 3, 28, 28)
    encoder, buffer = Encoder(model).eval(), io.BytesIO()
    torch.onnx.export(encoder, (x,), buffer, input_names=["x"], output_names=["u"], dynamo=False)
    onnx_u = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_u, model.encode(x).numpy(), atol=1e-5)
