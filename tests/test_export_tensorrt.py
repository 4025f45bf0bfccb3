"""TensorRT: engine naming and sidecar checks (no TensorRT needed), the trtexec fallback, and a real build
where `tensorrt` is installed."""
from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from sadh.export.tensorrt_build import BatchProfile, cached_engine, source_onnx, trtexec_command
from sadh.sdk.engine_meta import (
    EngineMeta,
    check_engine_meta,
    engine_path,
    read_engine_meta,
    sidecar_path,
    write_engine_meta,
)
from sadh.sdk.errors import SadhError

ORIN, ORIN_TRT = "Orin (nvgpu)", "10.3.0"


def fake_engine(tmp_path: Path, gpu: str = ORIN, version: str = ORIN_TRT) -> Path:
    """An engine file with a sidecar, as `build_engine` writes them (the engine bytes are not real)."""
    onnx_file = tmp_path / "m.int8-qdq.onnx"
    onnx_file.write_bytes(b"onnx")
    engine = engine_path(tmp_path, "m", "int8", gpu, version)
    engine.write_bytes(b"engine")
    write_engine_meta(engine, EngineMeta(gpu, version, "int8", onnx_file.name, hashlib.sha256(b"onnx").hexdigest(), 1, 8, 32, 224))
    return engine


def test_engine_name_holds_gpu_and_version(tmp_path: Path) -> None:
    path = engine_path(tmp_path, "best", "fp16", "NVIDIA H100 80GB HBM3", "10.13.0.35")
    assert path == tmp_path / "best.fp16.nvidia-h100-80gb-hbm3.trt10.13.0.35.engine"
    assert sidecar_path(path).name == path.name + ".json"


def test_sidecar_round_trip_and_mismatch(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path)
    meta = read_engine_meta(engine)
    assert (meta.gpu, meta.tensorrt, meta.precision, meta.batch_max) == (ORIN, ORIN_TRT, "int8", 32)
    check_engine_meta(meta, ORIN, ORIN_TRT, engine)
    with pytest.raises(SadhError, match=r"built on GPU 'Orin \(nvgpu\)', this is 'NVIDIA A100'"):
        check_engine_meta(meta, "NVIDIA A100", ORIN_TRT, engine)
    with pytest.raises(SadhError, match="built with TensorRT 10.3.0, this is 10.7.0.*rebuild"):
        check_engine_meta(meta, ORIN, "10.7.0", engine)
    onnx_file = tmp_path / "m.int8-qdq.onnx"
    assert cached_engine(engine, onnx_file, BatchProfile(1, 8, 32), ORIN, ORIN_TRT)
    assert not cached_engine(engine, onnx_file, BatchProfile(1, 8, 64), ORIN, ORIN_TRT)
    assert not cached_engine(engine, onnx_file, BatchProfile(1, 8, 32), "NVIDIA A100", ORIN_TRT)
    onnx_file.write_bytes(b"re-exported")
    assert not cached_engine(engine, onnx_file, BatchProfile(1, 8, 32), ORIN, ORIN_TRT)


def test_missing_or_broken_sidecar(tmp_path: Path) -> None:
    with pytest.raises(SadhError, match="no sidecar"):
        read_engine_meta(tmp_path / "x.engine")
    engine = fake_engine(tmp_path)
    sidecar = sidecar_path(engine)
    sidecar.write_text(json.dumps({"gpu": ORIN}))
    with pytest.raises(SadhError, match="not a sadh engine sidecar"):
        read_engine_meta(engine)


def test_trtexec_command(tmp_path: Path) -> None:
    command = trtexec_command(tmp_path / "m.int8-qdq.onnx", tmp_path / "m.int8.engine", "int8", BatchProfile(2, 8, 64), 224, tmp_path / "timing.cache")
    args = shlex.split(command)
    assert args == [
        "trtexec", f"--onnx={tmp_path / 'm.int8-qdq.onnx'}", f"--saveEngine={tmp_path / 'm.int8.engine'}", "--int8",
        "--minShapes=images:2x3x224x224", "--optShapes=images:8x3x224x224", "--maxShapes=images:64x3x224x224",
        f"--timingCacheFile={tmp_path / 'timing.cache'}",
    ]
    assert "--fp16" in shlex.split(trtexec_command(Path("m.onnx"), Path("e"), "fp16", BatchProfile(), 28, Path("t")))


def test_engine_source_model_depends_on_tensorrt_version() -> None:
    paths = {"fp32": Path("m.onnx"), "fp16": Path("m.fp16.onnx"), "int8-qdq": Path("m.int8-qdq.onnx")}
    assert source_onnx(paths, "fp16", "10.3.0") == Path("m.onnx")  # weakly typed: BuilderFlag.FP16
    assert source_onnx(paths, "fp16", "11.0.0") == Path("m.fp16.onnx")  # strongly typed: types from the model
    assert source_onnx(paths, "int8", "10.3.0") == Path("m.int8-qdq.onnx")
    with pytest.raises(SadhError, match="export with --int8"):
        source_onnx({"fp32": Path("m.onnx")}, "int8", "10.3.0")
    with pytest.raises(SadhError, match="batch sizes"):
        BatchProfile(8, 4, 32)


def test_tensorrt_builds_an_engine(tmp_path: Path) -> None:
    trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed (engine builds run only on GPU machines with TensorRT)")
    from sadh.export.api import export_model
    from sadh.sdk.engine_meta import current_gpu_name
    from test_export import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "m.pt")
    result = export_model(ckpt, tmp_path, fp16=True, engine=True, parity_images=16, batch=BatchProfile(1, 2, 4))
    engine = result.path("engine-fp16")
    meta = read_engine_meta(engine)
    assert (meta.tensorrt, meta.gpu, meta.batch_max) == (trt.__version__, current_gpu_name(), 4)
    assert list(tmp_path.glob("timing.*.cache"))
