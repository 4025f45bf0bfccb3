"""Export: ONNX FP32/FP16/INT8 from a real checkpoint, parity with torch on Fashion-MNIST, metadata, errors."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from sadh.cli.app import app
from sadh.export import api
from sadh.export.api import STAGING_PREFIX, ExportResult, export_model
from sadh.export.int8 import qdq_violations
from sadh.export.onnx_model import weights_digest
from sadh.export.onnx_model import export_onnx
from sadh.export.parity import (
    Parity, checkpoint_dataset, compare_codes, cpu_session, model_inputs, require_parity, run_codes, spread, torch_codes,
)
from sadh.export.settings import ExportSettings
from sadh.sdk.data import Split, load_fashion_mnist
from sadh.sdk.data.fashion_mnist import find_fashion_mnist
from sadh.sdk.errors import SadhError
from sadh.sdk.formats import model as md
from sadh.train.backbones import backbone_entry
from sadh.train.checkpoint import load_model, save_checkpoint
from sadh.train.config import TrainConfig
from sadh.sdk.preprocess import Preprocess
from sadh.train.model import create_model
from cli_run import cli

BITS = 32


def write_checkpoint(path: Path, bits: int = BITS, config: dict | None = None, seed: int = 0) -> Path:
    """A small-CNN checkpoint (random init, seeded) in the trainer's format, trained on Fashion-MNIST."""
    torch.manual_seed(seed)
    model = create_model("small_cnn", bits, 10)
    pre = backbone_entry("small_cnn").preprocess()
    save_checkpoint(path, {
        "model": model.state_dict(), "config": config or TrainConfig(backbone="small_cnn", bits=bits).to_dict(),
        "preprocess": pre.to_json(), "class_names": [f"c{i}" for i in range(10)], "dataset": "fashion-mnist",
        "method": "sadh", "backbone": "small_cnn", "bits": bits, "num_classes": 10, "best_map": None,
    })
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """One export of every ONNX flavour (the slow part, shared by the tests below)."""
    root = tmp_path_factory.mktemp("export")
    ckpt = write_checkpoint(root / "model.pt")
    return export_model(ckpt, root / "out", ExportSettings(fp16=True, int8=True, calib_images=100), parity_images=64)


@pytest.fixture(scope="module")
def fresh_images(exported: ExportResult) -> tuple[np.ndarray, np.ndarray]:
    """Real query images the export did not use for parity, and the torch codes of them."""
    ckpt = exported.path("fp32").parent.parent / "model.pt"
    model, info = load_model(ckpt)
    data, split = checkpoint_dataset(ckpt)
    x = model_inputs(data, split.query[1::7][:200], info.preprocess)
    return x, torch_codes(model, x)


def test_every_flavour_is_written_with_its_name(exported: ExportResult) -> None:
    names = {a.precision: a.path.name for a in exported.artifacts}
    assert names == {
        "fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8-qdq": "model.int8-qdq.onnx",
        "int8-cpu": "model.int8-cpu.onnx", "calib": "model.calib.json", "split": "model.split.npz",
    }
    for a in exported.artifacts:
        assert a.path.is_file() and a.size_bytes == a.path.stat().st_size > 0
        if a.path.suffix == ".onnx":  # every model was parity-checked against torch, at least at its threshold
            assert a.parity is not None and a.parity.bit_agreement >= {"fp32": 0.999, "fp16": 0.99}.get(a.precision, 0.90)
    assert json.loads(exported.path("calib").read_text())  # onnxruntime's calibration ranges


def test_fp32_matches_torch_on_real_images(exported: ExportResult, fresh_images) -> None:
    x, reference = fresh_images
    parity = compare_codes(reference, run_codes(cpu_session(exported.path("fp32")), x))
    assert parity.max_abs_diff < 1e-4
    assert parity.bit_agreement >= 0.999
    fp32 = next(a for a in exported.artifacts if a.precision == "fp32")
    assert fp32.parity is not None and fp32.parity.bit_agreement >= 0.999 and fp32.parity.images == 64


@pytest.mark.parametrize("precision, least", [("fp16", 0.99), ("int8-qdq", 0.9), ("int8-cpu", 0.9)])
def test_reduced_precision_keeps_codes_close(exported: ExportResult, fresh_images, precision: str, least: float) -> None:
    x, reference = fresh_images
    codes = run_codes(cpu_session(exported.path(precision)), x)
    parity = compare_codes(reference, codes)
    assert parity.bit_agreement >= least, parity.summary()
    assert not np.array_equal(codes, reference)  # really a different model, not a copy of the FP32 one


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-qdq", "int8-cpu"])
def test_packed_output_is_packbits_of_codes_for_any_batch(exported: ExportResult, fresh_images, precision: str) -> None:
    x, _ = fresh_images
    session = cpu_session(exported.path(precision))
    for n in (1, 5):
        codes, packed = session.run([md.CODES_OUTPUT, md.PACKED_OUTPUT], {md.INPUT_NAME: x[:n]})
        assert codes.shape == (n, BITS) and codes.dtype == np.float32
        assert packed.dtype == np.uint8
        np.testing.assert_array_equal(packed, np.packbits(codes > 0, axis=1, bitorder="big"))


def test_metadata_round_trip(exported: ExportResult) -> None:
    ckpt = exported.path("fp32").parent.parent / "model.pt"
    model, info = load_model(ckpt)
    weights = weights_digest(model)
    assert len(weights) == 32
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3  # one weight retrained: another digest
    assert weights_digest(model) != weights
    for precision in ("fp32", "fp16", "int8-qdq", "int8-cpu"):
        meta = cpu_session(exported.path(precision)).get_modelmeta().custom_metadata_map
        assert int(meta[md.BITS]) == info.bits
        assert Preprocess.from_json(meta[md.PREPROCESS]) == info.preprocess
        assert json.loads(meta[md.CLASS_NAMES]) == info.class_names
        assert (meta[md.METHOD], meta[md.BACKBONE], meta[md.DATASET]) == ("sadh", "small_cnn", "fashion-mnist")
        assert meta[md.PRECISION] == precision
        assert meta[md.VERSION] == importlib_metadata.version("sadh")
        assert meta[md.WEIGHTS] == weights  # one digest for every precision: index and camera may use different files


def test_model_formats(exported: ExportResult) -> None:
    fp32 = onnx.load(str(exported.path("fp32")))
    assert max(o.version for o in fp32.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert fp32.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    half = onnx.load(str(exported.path("fp16")))
    float_io = onnx.TensorProto.FLOAT
    assert half.graph.input[0].type.tensor_type.elem_type == float_io
    assert half.graph.output[0].type.tensor_type.elem_type == float_io
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    qdq = onnx.load(str(exported.path("int8-qdq")))
    assert qdq_violations(qdq) == []
    cpu = onnx.load(str(exported.path("int8-cpu")))  # U8S8 in the QOperator format (export/int8.py)
    initializers = {t.name: t for t in cpu.graph.initializer}
    weights = [t for t in initializers.values() if len(t.dims) >= 2]  # convolution kernels and the code layer's matrix
    assert weights and {t.data_type for t in weights} == {onnx.TensorProto.INT8}, [t.name for t in weights]  # S8 weights
    dequantized = [n.input[0] for n in cpu.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers]
    assert dequantized == []  # QOperator: integer operators take the weights; none is turned back into float (Q/DQ)
    zero_points = {initializers[n.input[2]].data_type for n in cpu.graph.node if n.op_type == "QuantizeLinear"}
    assert zero_points == {onnx.TensorProto.UINT8}  # U8 activations


def test_every_model_loads_in_jetpack_6s_onnxruntime(exported: ExportResult) -> None:
    """onnxruntime 1.20 (NVIDIA's Jetson builds for JetPack 6) reads ONNX IR <= 10 and ai.onnx opsets <= 21; the
    torch-free test stages run these files' kind with 1.20.1 itself (scripts/test-lowest.sh, test-aarch64.sh)."""
    for precision in ("fp32", "fp16", "int8-qdq", "int8-cpu"):
        model = onnx.load(str(exported.path(precision)))
        assert model.ir_version <= 10, precision
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 21, precision


def test_parity_check_fails_below_threshold() -> None:
    reference = np.array([[0.5, -0.5, 0.2, -0.1]], dtype=np.float32)
    flipped = reference * np.array([1, 1, -1, -1], dtype=np.float32)
    parity = compare_codes(reference, flipped)
    assert parity == Parity(max_abs_diff=pytest.approx(0.4), bit_agreement=0.5, images=1)
    with pytest.raises(SadhError, match="parity"):
        require_parity(parity, 0.999, "x.onnx")
    require_parity(parity, 0.5, "x.onnx")


def test_parity_check_fails_on_non_finite_codes() -> None:
    reference = np.array([[0.5, -0.5, np.nan, -0.1]], dtype=np.float32)
    with pytest.raises(SadhError, match="NaN or inf"):
        require_parity(compare_codes(reference, reference), 0.5, "x.onnx")  # the signs all agree, yet it must fail


def test_export_fails_when_parity_threshold_is_not_met(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "m.pt")
    earlier = {name: f"good {name}".encode() for name in ("m.onnx", "m.split.npz", "m.int8-qdq.onnx", "m.int8-cpu.onnx", "m.calib.json")}
    for name, content in earlier.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(SadhError, match="int8-qdq.onnx fails the parity check"):
        export_model(ckpt, tmp_path, ExportSettings(int8=True, calib_images=20, int8_threshold=1.0), parity_images=16)
    for name, content in earlier.items():  # nothing moves unless every model passes: the earlier set stays whole
        assert (tmp_path / name).read_bytes() == content, name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.pt", *earlier])  # no staging folder left
    lines: list[str] = []
    export_model(ckpt, tmp_path, parity_images=16, log=lines.append)  # FP32 only: the earlier INT8 files are another model's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt", "m.split.npz"]
    assert (tmp_path / "m.onnx").read_bytes() != earlier["m.onnx"]
    assert "removed m.int8-cpu.onnx: left by an earlier export, it belongs to another model" in lines


def test_a_narrower_re_export_keeps_models_of_the_same_weights_and_removes_others(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "m.pt")
    export_model(ckpt, tmp_path / "out", ExportSettings(int8=True, calib_images=20), parity_images=8)
    int8 = ["m.int8-qdq.onnx", "m.int8-cpu.onnx", "m.calib.json"]
    lines: list[str] = []
    export_model(ckpt, tmp_path / "out", parity_images=8, log=lines.append)  # same checkpoint, FP32 only
    assert all((tmp_path / "out" / name).is_file() for name in int8)
    assert "kept m.int8-cpu.onnx: an earlier export of the same trained weights" in lines and not any("removed" in x for x in lines)
    write_checkpoint(ckpt, seed=1)  # retrained: other weights under the same name
    lines.clear()
    export_model(ckpt, tmp_path / "out", parity_images=8, log=lines.append)
    assert not any((tmp_path / "out" / name).exists() for name in int8)
    assert "removed m.calib.json: left by an earlier export, it belongs to another model" in lines


def test_export_refuses_a_tensorrt_model_that_breaks_the_qdq_rules(tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    asymmetric = dataclasses.replace(api.TENSORRT_FLAVOUR, activation_symmetric=False)  # zero points TensorRT cannot take
    monkeypatch.setattr(api, "TENSORRT_FLAVOUR", asymmetric)
    with pytest.raises(SadhError, match="int8-qdq.onnx"):
        export_model(write_checkpoint(tmp_path / "m.pt"), tmp_path / "out", ExportSettings(int8=True, calib_images=20), parity_images=8)
    assert not (tmp_path / "out" / "m.int8-qdq.onnx").exists()


def test_int8_calibration_says_when_the_training_split_is_smaller_than_asked(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "m.pt")
    data = load_fashion_mnist()
    split = Split(np.arange(0, 8), np.arange(8, 20), np.arange(20, 40))  # 12 training images
    lines: list[str] = []
    settings = ExportSettings(int8=True, calib_images=50, int8_threshold=0.0)
    export_model(ckpt, tmp_path / "out", settings, parity_images=8, data=(data, split), log=lines.append)
    assert "calibrating INT8 on 12 training images (fewer than the 50 asked for)" in lines


def test_export_removes_staging_folders_of_killed_exports_only(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "m.pt")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    host = api._host()
    killed = tmp_path / f"{STAGING_PREFIX}{host}-{int(gone.stdout)}-abc"  # its process has exited: left by kill -9
    running = tmp_path / f"{STAGING_PREFIX}{host}-{os.getpid()}-def"  # this process is alive: another export's folder
    elsewhere = tmp_path / f"{STAGING_PREFIX}otherhost-{int(gone.stdout)}-ghi"  # another machine's (a shared file system)
    for folder in (killed, running, elsewhere):
        folder.mkdir()
        (folder / "m.onnx").write_bytes(b"half written")
    lines: list[str] = []
    export_model(ckpt, tmp_path, parity_images=16, log=lines.append)
    assert not killed.exists() and (running / "m.onnx").read_bytes() == b"half written" and elsewhere.is_dir()
    assert f"removed {killed.name}: the staging folder of an export that was killed" in lines
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.onnx", "m.pt", "m.split.npz", running.name, elsewhere.name])


class _NoOnnxForm(torch.autograd.Function):
    """An operation whose ONNX translation (its `symbolic`) refuses, in every torch version."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.tanh()

    @staticmethod
    def symbolic(g: object, x: object) -> None:
        raise RuntimeError("no ONNX form")


class Unexportable(torch.nn.Module):
    """A layer the ONNX exporter cannot translate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NoOnnxForm.apply(x)


def _info(model: torch.nn.Module):
    return type("Info", (), dict(
        bits=model.bits, preprocess=backbone_entry("small_cnn").preprocess(), class_names=["a"],
        method="sadh", backbone="small_cnn", dataset="d",
    ))


def test_unsupported_operator_names_the_layer(tmp_path: Path) -> None:
    model = create_model("small_cnn", BITS, 10).eval()
    model.backbone.features[1] = Unexportable()
    with pytest.raises(SadhError, match=r"^ONNX export at opset \d+ failed in layer 'model\.backbone\.features\.1' \(Unexportable\): "):
        export_onnx(model, _info(model), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_shape_problem_names_the_layer(tmp_path: Path) -> None:
    model = create_model("small_cnn", BITS, 10).eval()
    model.code = torch.nn.Linear(model.code.in_features + 1, BITS)
    with pytest.raises(SadhError, match=r"layer 'model\.code'"):
        export_onnx(model, _info(model), tmp_path / "m.onnx")


def test_opset_too_old_is_refused(tmp_path: Path) -> None:
    model = create_model("small_cnn", BITS, 10).eval()
    with pytest.raises(SadhError, match="opset 13"):
        export_onnx(model, _info(model), tmp_path / "m.onnx", opset=13)


def test_bad_checkpoint_path(tmp_path: Path) -> None:
    with pytest.raises(SadhError, match="checkpoint not found"):
        export_model(tmp_path / "missing.pt", tmp_path)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "missing.pt")])
    assert result.exit_code != 0 and isinstance(result.exception, SadhError)


def test_dataset_comes_from_the_checkpoint_data_settings_only(tmp_path: Path) -> None:
    old_run = {"data": "fashion-mnist", "query_per_class": 50, "eval_database": None, "a_setting_from_elsewhere": 1}
    data, split = checkpoint_dataset(write_checkpoint(tmp_path / "m.pt", config=old_run))
    assert data.name == "fashion-mnist" and len(split.query) == 500
    np.testing.assert_array_equal(np.bincount(data.labels[split.query].argmax(1)), np.full(10, 50))


def test_the_exported_split_keeps_the_labels_the_run_trained_on(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "run" / "best.pt")
    trained_on = np.eye(10, dtype=np.uint8)[np.arange(70000) % 10]  # labels the data had then, not now
    run_split = Split(np.arange(100), np.arange(100, 300), np.arange(300, 600)).made_for(trained_on)
    run_split.save(tmp_path / "run" / "split.npz")
    lines: list[str] = []
    result = export_model(ckpt, tmp_path / "out", parity_images=16, log=lines.append)
    assert any(line.startswith("warning: the labels of fashion-mnist changed since the run was trained") for line in lines)
    assert Split.load(result.path("split")).fingerprint == run_split.fingerprint  # so eval / index build notice it too


def test_export_finds_images_that_moved_since_training(tmp_path: Path, fashion_small) -> None:
    (tmp_path / "old").mkdir()
    cls = fashion_small.labels.argmax(1)
    rows = [(c, i) for c in range(10) for i in np.flatnonzero(cls == c)[:4]]
    for c, i in rows:
        cv2.imwrite(str(tmp_path / "old" / f"{i}.png"), fashion_small.image(i))
    (tmp_path / "all.txt").write_text("".join(f"{i}.png {' '.join(str(int(c == d)) for d in range(10))}\n" for c, i in rows))
    config = TrainConfig(data=str(tmp_path / "all.txt"), image_root=str(tmp_path / "old"), query_per_class=1, train_per_class=2)
    ckpt = write_checkpoint(tmp_path / "run" / "best.pt", config=config.to_dict())
    (tmp_path / "old").rename(tmp_path / "new")
    with pytest.raises(SadhError, match=r"cannot load its dataset .*does not exist\); if its images moved, pass --image-root$"):
        checkpoint_dataset(ckpt)
    out = cli("export", ckpt, "--image-root", tmp_path / "new", "-o", tmp_path / "out")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "out" / "best.onnx").is_file() and f"--image-root {tmp_path / 'new'}" in out.stdout


def test_spread_is_deterministic_and_covers_the_range() -> None:
    index = np.arange(100, 200)
    picked = spread(index, 5)
    assert picked.tolist() == [100, 125, 150, 174, 199]  # np.linspace(0, 99, 5) rounded
    assert spread(index, 1000) is index
    with pytest.raises(SadhError):
        spread(index, 0)


def test_cli_export_prints_table_trtexec_and_next_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sadh.export.api.tensorrt_version", lambda: None)  # the no-TensorRT path, even where it is installed
    data_dir = tmp_path / "fashion mnist"  # a data option with a space, which the hint must quote
    data_dir.symlink_to(find_fashion_mnist()["train_images"].parent)
    ckpt = write_checkpoint(tmp_path / "best.pt", config=TrainConfig(backbone="small_cnn", bits=BITS, data_dir=str(data_dir)).to_dict())
    out_dir = tmp_path / "out dir"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(out_dir), "--engine", "--batch-max", "16"])
    assert result.exit_code == 0, result.output
    assert "best.onnx" in result.output and "fp32" in result.output and "bits" in result.output
    assert "TensorRT is not installed" in result.output
    assert "--maxShapes=images:16x3x28x28" in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("next: ")]
    assert shlex.split(line[len("next: "):]) == [
        "sadh-cli", "index", "build", "--model", str(out_dir / "best.onnx"), "--data-dir", str(data_dir), "--out", "index.sidx",
    ]
    saved = Split.load(out_dir / "best.split.npz")  # the training split, beside the models for eval / index build
    data, split = checkpoint_dataset(ckpt)
    for role in ("query", "train", "database"):
        np.testing.assert_array_equal(getattr(saved, role), getattr(split, role))
    assert saved.fits(data.labels) and not saved.fits(data.labels[::-1])  # it records the data it was made for


def test_bad_int8_options_fail_before_exporting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = write_checkpoint(tmp_path / "m.pt")
    monkeypatch.setattr("sadh.export.api.modelopt_available", lambda: False)
    with pytest.raises(SadhError, match="needs NVIDIA ModelOpt"):
        export_model(ckpt, tmp_path / "out", ExportSettings(int8=True, qdq_tool="modelopt"))
    with pytest.raises(SadhError, match="unknown calibration method 'kl'"):
        export_model(ckpt, tmp_path / "out", ExportSettings(int8=True, calib_method="kl"))
    with pytest.raises(SadhError, match="unknown Q/DQ tool"):
        export_model(ckpt, tmp_path / "out", ExportSettings(int8=True, qdq_tool="tflite"))
    assert not (tmp_path / "out").exists()


def test_fp16_graph_order_puts_producers_first_and_names_a_broken_graph() -> None:
    from onnx import helper

    from sadh.export.onnx_model import topological_sort

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    late, early = helper.make_node("Relu", ["a"], ["b"], name="late"), helper.make_node("Neg", ["x"], ["a"], name="early")
    graph = helper.make_graph([late, early], "g", [x], [helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1])])
    topological_sort(graph)
    assert [n.name for n in graph.node] == ["early", "late"]
    broken = helper.make_graph([helper.make_node("Relu", ["missing"], ["y"], name="orphan")], "g", [x], [])
    with pytest.raises(SadhError, match="FP16 graph has a cycle or a missing input at node 'orphan'"):
        topological_sort(broken)
