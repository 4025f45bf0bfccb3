"""Encoder: codes equal the torch model's on the same preprocessed input; clear errors; files; threads; no torch."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from sadh.sdk.codes import pack_codes
from sadh.sdk import encoder as encoder_module
from sadh.sdk.encoder import Encoder
from sadh.sdk.errors import ModelError, SadhError
from sadh.sdk.formats import model as md
from sadh.sdk.preprocess import Preprocess, preprocess
from tiny_model import CLASS_NAMES, PREPROCESS, export_tiny, torch_reference

MARGIN = 1e-4  # bits whose torch value is this close to 0 may flip between runtimes


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    """Tiny exported models (and their parameters): continuous output only, and with a packed output too."""
    d = tmp_path_factory.mktemp("models")
    return {
        "codes": (d / "codes.onnx", export_tiny(d / "codes.onnx", bits=32)),
        "packed": (d / "packed.onnx", export_tiny(d / "packed.onnx", bits=48, packed=True)),
    }


@pytest.fixture(scope="module")
def frames(fashion_small) -> list[np.ndarray]:
    """Real frames of several sizes and channel counts: gray 28x28, a BGR photo, BGRA, a gray photo, odd sizes."""
    import skimage.data

    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    coffee = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)
    return [
        fashion_small.image(0),
        fashion_small.image(57),
        astronaut,
        cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA),
        cv2.cvtColor(coffee, cv2.COLOR_BGR2GRAY),
        cv2.resize(coffee, (97, 61)),
        skimage.data.camera()[:, :, None],
        astronaut[100:133, 50:300],
    ]


def torch_codes(params: dict[str, np.ndarray], frames: list[np.ndarray]) -> np.ndarray:
    """The same net's continuous codes in torch on the sdk-preprocessed frames."""
    import torch

    with torch.no_grad():
        return torch_reference(params)(torch.from_numpy(preprocess(frames, PREPROCESS))).numpy()


def assert_same_bits(packed: np.ndarray, reference: np.ndarray) -> None:
    """Packed codes equal sign(reference) wherever the reference is not within MARGIN of 0."""
    bits = np.unpackbits(packed, axis=1)
    sure = np.abs(reference) > MARGIN
    assert bits.shape == reference.shape
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(bits[sure], (reference > 0)[sure])


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["codes", "packed"])
def test_codes_match_torch(models, frames, kind):
    path, params = models[kind]
    enc = Encoder(path, max_batch=3)
    ref = torch_codes(params, frames)
    codes = enc.encode(frames)
    assert codes.dtype == np.uint8 and codes.shape == (len(frames), params["head.bias"].size // 8)
    assert_same_bits(codes, ref)
    assert len({row.tobytes() for row in codes}) > len(frames) // 2  # the codes really depend on the image
    np.testing.assert_allclose(enc.encode_continuous(frames), ref, atol=1e-4)
    single = enc.encode(frames[2])
    np.testing.assert_array_equal(single, codes[2:3])


def test_metadata_properties(models):
    enc = Encoder(models["packed"][0], providers=["CPUExecutionProvider"])
    assert enc.bits == 48
    assert enc.preprocess == PREPROCESS
    assert enc.class_names == CLASS_NAMES
    assert enc.providers == ["CPUExecutionProvider"]
    assert enc.precision == "fp32"


def test_batch_array_equals_list(models, fashion_small):
    enc = Encoder(models["codes"][0], max_batch=7)
    batch = fashion_small.images[:20]
    np.testing.assert_array_equal(enc.encode(batch), enc.encode(list(batch)))
    np.testing.assert_array_equal(enc.encode(batch), pack_codes(enc.encode_continuous(batch)))


def test_fixed_batch_model_is_padded(models, fashion_small, tmp_path):
    export_tiny(tmp_path / "fixed.onnx", bits=32, fixed_batch=4)
    fixed = Encoder(tmp_path / "fixed.onnx", max_batch=64)
    assert fixed.max_batch == 4
    batch = fashion_small.images[:10]  # 4 + 4 + 2 (padded to 4)
    np.testing.assert_array_equal(fixed.encode(batch), Encoder(models["codes"][0]).encode(batch))


def test_errors(models, tmp_path):
    with pytest.raises(SadhError, match="not found"):
        Encoder(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model\n" * 10)
    with pytest.raises(SadhError, match="not a loadable ONNX model"):
        Encoder(garbage)
    bare = tmp_path / "bare.onnx"
    export_tiny(bare, metadata=False)
    with pytest.raises(SadhError, match=r"not an exported sadh model \(missing sadh.bits, sadh.preprocess\); export it"):
        Encoder(bare)
    proto = onnx.load(str(models["codes"][0]))
    proto.metadata_props[0].value = "12"
    odd = tmp_path / "odd.onnx"
    onnx.save(proto, str(odd))
    with pytest.raises(SadhError, match="bits"):
        Encoder(odd)
    with pytest.raises(SadhError, match="provider"):
        Encoder(models["codes"][0], providers=["NoSuchExecutionProvider"])
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(SadhError, match="no sidecar|cuda-python is not installed" if importlib.util.find_spec("tensorrt") else "TensorRT is not installed"):
        Encoder(engine)
    with pytest.raises(SadhError, match="max_batch"):
        Encoder(models["codes"][0], max_batch=0)
    one = Encoder(models["codes"][0], providers="CPUExecutionProvider", max_batch=np.int64(3))  # a name, not a list
    assert one.providers == ["CPUExecutionProvider"] and one.max_batch == 3 and type(one.max_batch) is int
    enc = Encoder(models["codes"][0])
    with pytest.raises(SadhError, match="got dict"):
        enc.encode({"a": np.zeros((30, 30, 3), np.uint8)})
    with pytest.raises(SadhError, match="uint8"):
        enc.encode(np.zeros((30, 30, 3), np.float32))
    with pytest.raises(SadhError, match="no images"):
        enc.encode([])


@pytest.mark.torch
def test_a_training_checkpoint_is_named(tmp_path):
    import torch

    checkpoint = tmp_path / "best.pt"
    torch.save({"model": {}}, checkpoint)
    with pytest.raises(SadhError, match=r"best.pt: a training checkpoint \(torch zip\), not a model to run; export it"):
        Encoder(checkpoint)


def edited_copy(src: Path, dst: Path, preprocess_json: str | None = None, nan_head: bool = False) -> Path:
    """Save a copy of an exported model with other preprocessing metadata and/or NaN head weights."""
    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if preprocess_json and prop.key == md.PREPROCESS:
            prop.value = preprocess_json
    for init in proto.graph.initializer:
        if nan_head and init.name == "head.weight":
            init.CopyFrom(onnx.numpy_helper.from_array(np.full(tuple(init.dims), np.nan, np.float32), init.name))
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("kind", ["codes", "packed"])
def test_non_finite_model_outputs_raise(models, tmp_path, kind):
    enc = Encoder(edited_copy(models[kind][0], tmp_path / "nan.onnx", nan_head=True))
    with pytest.raises(SadhError, match="non-finite model outputs"):
        enc.encode(np.zeros((28, 28), np.uint8))  # the packed output alone would be all-zero codes
    with pytest.raises(SadhError, match="non-finite model outputs"):
        enc.encode_continuous(np.zeros((28, 28), np.uint8))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((28, 28), np.uint8))
    with pytest.raises(SadhError, match="non-finite model outputs"):  # the model's fault, not an unreadable file to skip
        enc.encode_files([tmp_path / "a.png"])


def test_a_model_fault_stops_encoding_even_after_a_bad_frame_split_the_batch(models, tmp_path, monkeypatch):
    enc = Encoder(edited_copy(models["codes"][0], tmp_path / "nan.onnx", nan_head=True))
    for name in ("odd.png", "good.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((28, 28), np.uint8))
    real = encoder_module.read_image
    monkeypatch.setattr(encoder_module, "read_image", lambda p: real(p).astype(np.float32) if "odd" in str(p) else real(p))
    with pytest.raises(ModelError, match="non-finite model outputs"):  # not "good.png: ..." listed as an unreadable file
        enc.encode_files([tmp_path / "odd.png", tmp_path / "good.png"])


@pytest.mark.parametrize("kind", ["codes", "packed"])
def test_codes_wider_than_the_metadata_says_are_a_model_error(models, tmp_path, kind):
    proto = onnx.load(str(models[kind][0]))
    for prop in proto.metadata_props:
        if prop.key == md.BITS:
            prop.value = "16"  # the network makes wider codes
    onnx.save(proto, str(tmp_path / "narrow.onnx"))
    with pytest.raises(ModelError, match=r"the model outputs (32|48)-bit codes but its metadata says 16"):
        Encoder(tmp_path / "narrow.onnx").encode(np.zeros((28, 28), np.uint8))


def test_a_model_onnxruntime_cannot_run_is_one_line_and_stops_encoding(models, tmp_path, monkeypatch):
    enc = Encoder(models["codes"][0])
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((28, 28), np.uint8))

    def fails(*args: object) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node")

    monkeypatch.setattr(enc._runner.session, "run", fails)
    with pytest.raises(SadhError, match=r"onnxruntime could not run the model \(\[ONNXRuntimeError\] : 6 : RUNTIME_EXCEPTION"):
        enc.encode_files([tmp_path / "a.png"])


def test_metadata_must_fit_the_graph_input(models, tmp_path):
    other = Preprocess(32, 36, PREPROCESS.mean, PREPROCESS.std).to_json()
    with pytest.raises(SadhError, match=r"model input is \?x3x28x28 but .* says 32x32"):
        Encoder(edited_copy(models["codes"][0], tmp_path / "size.onnx", preprocess_json=other))
    nan_std = PREPROCESS.to_json().replace('"std": [0.229', '"std": [NaN')
    assert "NaN" in nan_std
    with pytest.raises(SadhError, match="mean/std"):
        Encoder(edited_copy(models["codes"][0], tmp_path / "std.onnx", preprocess_json=nan_std))


def test_ambiguous_frame_shapes_are_refused(models, fashion_small):
    enc = Encoder(models["codes"][0])
    for shape in ((28, 28, 2), (28, 28, 5), (28, 28, 7)):  # not read as 28 gray frames of 28 x C
        with pytest.raises(SadhError, match="expected a frame"):
            enc.encode(np.zeros(shape, np.uint8))
    gray = fashion_small.images[:3]
    np.testing.assert_array_equal(enc.encode(gray), enc.encode(gray[..., None]))  # NxHxW and NxHxWx1 batches agree
    narrow = np.ascontiguousarray(fashion_small.image(0)[:, 12:15])  # one 28x3 gray frame
    np.testing.assert_array_equal(enc.encode(narrow), enc.encode([narrow]))


def test_encode_files_reports_failures(models, frames, tmp_path):
    enc = Encoder(models["codes"][0], max_batch=2)
    good = []
    for i, frame in enumerate(frames[:5]):
        good.append(tmp_path / f"img{i}.png")
        cv2.imwrite(str(good[-1]), frame)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    paths = [good[0], tmp_path / "missing.png", good[1], corrupt, good[2], tmp_path, good[3], good[4]]
    codes, failures = enc.encode_files(paths)
    assert [Path(p) for p, _ in failures] == [tmp_path / "missing.png", corrupt, tmp_path]
    assert all(msg for _, msg in failures)
    np.testing.assert_array_equal(codes, enc.encode([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in good]))


def test_threads_give_same_codes(models, fashion_small):
    enc = Encoder(models["packed"][0], max_batch=16)
    batches = [fashion_small.images[i * 50 : (i + 1) * 50] for i in range(4)]
    expected = [enc.encode(b) for b in batches]
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(4)}

    def work(i: int) -> None:
        for _ in range(3):
            results[i].append(enc.encode(batches[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert len(results[i]) == 3
        for got in results[i]:
            np.testing.assert_array_equal(got, expected[i])


def test_runtime_does_not_import_torch():
    code = (
        "import sys, sadh.sdk, sadh.sdk.encoder, sadh.sdk.retriever, sadh.sdk.grid, sadh.sdk.trt_runner; "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
