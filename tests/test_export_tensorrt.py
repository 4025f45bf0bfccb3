"""TensorRT: engine naming and sidecar checks (no TensorRT needed), the trtexec fallback, and a real build
where `tensorrt` is installed."""
from __future__ import annotations

import ctypes
import hashlib
import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sadh.export.settings import BatchProfile, ExportSettings
from sadh.export.trt_engine import cached_engine, engine_meta, source_onnx, trtexec_command
from sadh.sdk.encoder import Encoder
from sadh.sdk.errors import SadhError
from sadh.sdk.formats import model as md
from sadh.sdk.formats.engine import (
    EngineMeta,
    check_engine_meta,
    check_engine_shapes,
    engine_path,
    read_engine_meta,
    write_engine_meta,
)
from sadh.sdk.formats.records import sidecar_path
from sadh.sdk.preprocess import Preprocess

ORIN, ORIN_TRT = "Orin (nvgpu)", "10.3.0"
META = {md.BITS: "32", md.PREPROCESS: Preprocess(224, 256, (0.5,) * 3, (0.25,) * 3).to_json(), md.PRECISION: "int8-qdq"}


def fake_engine(tmp_path: Path, gpu: str = ORIN, version: str = ORIN_TRT) -> Path:
    """An engine file with a sidecar, as `build_engine` writes them (the engine bytes are not real)."""
    onnx_file = tmp_path / "m.int8-qdq.onnx"
    onnx_file.write_bytes(b"onnx")
    engine = engine_path(tmp_path, "m", "int8", gpu, version)
    engine.write_bytes(b"engine")
    write_engine_meta(engine, EngineMeta(gpu, version, "int8", onnx_file.name, hashlib.sha256(b"onnx").hexdigest(), 1, 8, 32, 224, META))
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
    fields = json.loads(json.dumps(read_engine_meta(fake_engine(tmp_path)).__dict__))
    del fields["metadata"]  # written before sidecars held the model's metadata
    sidecar.write_text(json.dumps(fields))
    with pytest.raises(SadhError, match="not a sadh engine sidecar .missing metadata.; rebuild"):
        read_engine_meta(engine)
    for name, value in (("batch_max", "32"), ("metadata", {md.BITS: 32}), ("tensorrt", 10)):
        sidecar.write_text(json.dumps({**fields, "metadata": META, name: value}))
        with pytest.raises(SadhError, match=f"not a sadh engine sidecar .{name} must be"):
            read_engine_meta(engine)


def test_trtexec_command(tmp_path: Path) -> None:
    onnx_file, engine, cache = tmp_path / "m.int8-qdq.onnx", tmp_path / "m.int8.engine", tmp_path / "timing.cache"
    command = trtexec_command(onnx_file, engine, "int8", BatchProfile(2, 8, 64), 224, cache, "10.3.0")
    args = shlex.split(command)
    assert args == [
        "trtexec", f"--onnx={onnx_file}", f"--saveEngine={engine}", "--int8",
        "--minShapes=images:2x3x224x224", "--optShapes=images:8x3x224x224", "--maxShapes=images:64x3x224x224",
        f"--timingCacheFile={cache}",
    ]
    assert "--fp16" in shlex.split(trtexec_command(Path("m.onnx"), Path("e"), "fp16", BatchProfile(), 28, Path("t"), "10"))
    strong = shlex.split(trtexec_command(onnx_file, engine, "int8", BatchProfile(2, 8, 64), 224, cache, "11.0.0"))
    assert strong == [a for a in args if a != "--int8"]  # TensorRT >= 11 has no precision flags


def test_trtexec_fallback_writes_sidecars_the_loader_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sadh.export.api.tensorrt_version", lambda: None)  # the no-TensorRT path, even where it is installed
    from sadh.export.api import Artifact, ExportResult, _engines
    from sadh.train.checkpoint import ModelInfo
    from tiny_model import CLASS_NAMES, PREPROCESS, export_tiny

    out = tmp_path / "out"
    out.mkdir()
    result = ExportResult(ModelInfo(16, "tiny", 10, CLASS_NAMES, PREPROCESS, "sadh", "fashion-mnist", None))
    for name, precision in (("best.onnx", "fp32"), ("best.fp16.onnx", "fp16")):  # stand-ins for the exported models
        export_tiny(out / name, bits=16, packed=True)
        result.artifacts.append(Artifact(out / name, precision, 0, 0.0))
    _engines(result, out, "best", True, False, BatchProfile(1, 2, 4), lambda line: None)
    assert len(result.trtexec) == 2 and result.trtexec[0].endswith("# TensorRT <= 10") and result.trtexec[1].endswith("# TensorRT >= 11")
    weak, strong = (dict(a.partition("=")[::2] for a in shlex.split(c, comments=True)[1:]) for c in result.trtexec)
    assert weak["--onnx"] == str(out / "best.onnx") and "--fp16" in weak  # TensorRT <= 10: --fp16 on the FP32 model
    assert strong["--onnx"] == str(out / "best.fp16.onnx") and "--fp16" not in strong  # >= 11: types from the FP16 model
    for args in (weak, strong):
        engine, onnx_file = Path(args["--saveEngine"]), Path(args["--onnx"])
        assert engine.parent == out and not engine.exists() and sidecar_path(engine).is_file()
        meta = read_engine_meta(engine)
        assert (meta.gpu, meta.tensorrt, meta.precision, meta.onnx) == (None, None, "fp16", onnx_file.name)
        assert meta.onnx_sha256 == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
        assert meta.metadata == {**Encoder(onnx_file).metadata, md.PRECISION: "fp16"}  # bits, preprocessing, class names
        check_engine_meta(meta, "any GPU", "10.3.0", engine)  # unknown GPU and TensorRT version: nothing to refuse
        profile = [tuple(int(d) for d in args[f"--{k}Shapes"].split(":")[1].split("x")) for k in ("min", "opt", "max")]
        check_engine_shapes(meta, profile, {md.CODES_OUTPUT: (-1, 16), md.PACKED_OUTPUT: (-1, 2)}, engine)


def fake_tensorrt(monkeypatch: pytest.MonkeyPatch, profile: list[tuple[int, ...]], codes_width: int) -> None:
    """Stand-ins for the `tensorrt` and `cuda` modules, with an engine of that input profile and `codes` width."""
    from types import ModuleType, SimpleNamespace

    io = {md.INPUT_NAME: ("in", (-1, 3, 28, 28)), md.CODES_OUTPUT: ("out", (-1, codes_width))}
    engine = SimpleNamespace(
        num_io_tensors=len(io), get_tensor_name=lambda i: list(io)[i], get_tensor_mode=lambda n: io[n][0],
        get_tensor_dtype=lambda n: np.float32, get_tensor_shape=lambda n: io[n][1],
        get_tensor_profile_shape=lambda n, i: profile, create_execution_context=lambda: None,
    )
    trt = ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    trt.Logger = type("Logger", (), {"WARNING": 0, "__init__": lambda self, level: None})
    trt.Runtime = lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: engine)
    trt.TensorIOMode = SimpleNamespace(OUTPUT="out")
    trt.nptype = lambda dtype: dtype
    cuda, bindings = ModuleType("cuda"), ModuleType("cuda.bindings")
    bindings.runtime = SimpleNamespace(cudaStreamCreate=lambda: (0, "stream"))
    for name, module in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", bindings.runtime)):
        monkeypatch.setitem(sys.modules, name, module)


def test_encoder_opens_an_engine_by_its_trtexec_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiny_model import export_tiny

    export_tiny(tmp_path / "m.onnx", bits=16)
    (tmp_path / "m.onnx").rename(tmp_path / "elsewhere.onnx")  # the engine needs no ONNX file beside it
    engine = tmp_path / "m.fp32.engine"
    engine.write_bytes(b"engine")
    write_engine_meta(engine, engine_meta(tmp_path / "elsewhere.onnx", "fp32", BatchProfile(1, 2, 4), 28, None, None))
    profile = [(1, 3, 28, 28), (2, 3, 28, 28), (4, 3, 28, 28)]
    fake_tensorrt(monkeypatch, profile, 16)
    encoder = Encoder(engine)
    assert (encoder.bits, encoder.preprocess.input_size, encoder.precision, encoder.providers) == (16, 28, "fp32", ["TensorRT"])
    assert encoder.max_batch == 4 and encoder.class_names
    fake_tensorrt(monkeypatch, profile, 32)  # an engine of another model than its sidecar's
    with pytest.raises(SadhError, match="'codes' output has 32 columns, the sidecar's model has 16 bits"):
        Encoder(engine)


def test_engine_shapes_must_match_the_sidecar(tmp_path: Path) -> None:
    meta = read_engine_meta(fake_engine(tmp_path))
    profile = [(1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224)]
    check_engine_shapes(meta, profile, {md.CODES_OUTPUT: (-1, 32), md.PACKED_OUTPUT: (-1, 4)})
    with pytest.raises(SadhError, match=r"input profile \(min/opt/max\) is 1x3x224x224/8x3x224x224/64x3x224x224, its sidecar says .*/32x3x224x224"):
        check_engine_shapes(meta, [*profile[:2], (64, 3, 224, 224)], {md.CODES_OUTPUT: (-1, 32)})
    with pytest.raises(SadhError, match="'packed' output has 8 columns, the sidecar's model has 32 bits"):
        check_engine_shapes(meta, profile, {md.PACKED_OUTPUT: (-1, 8)})


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
    from sadh.sdk.formats.engine import current_gpu_name
    from test_export import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "m.pt")
    result = export_model(ckpt, tmp_path, ExportSettings(fp16=True, engine=True, batch=BatchProfile(1, 2, 4)), parity_images=16)
    engine = result.path("engine-fp16")
    meta = read_engine_meta(engine)
    assert (meta.tensorrt, meta.gpu, meta.batch_max) == (trt.__version__, current_gpu_name(), 4)
    assert list(tmp_path.glob("timing.*.cache"))


class FakeDevice:
    """cuda-python's runtime calls the runner makes, on host memory: (error, value) tuples like cuda.bindings.runtime."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice="h2d", cudaMemcpyDeviceToHost="d2h")

    def __init__(self) -> None:
        self.buffers: dict[int, bytearray] = {}

    def cudaStreamCreate(self):
        return 0, "stream"

    def cudaMalloc(self, size: int):
        self.buffers[len(self.buffers) + 1000] = bytearray(size)
        return 0, len(self.buffers) + 999

    def cudaFree(self, ptr: int):
        del self.buffers[int(ptr)]
        return (0,)

    def cudaMemcpyAsync(self, dst, src, count: int, kind: str, stream: str):
        if kind == "h2d":
            self.buffers[dst][:count] = ctypes.string_at(src, count)
        else:
            ctypes.memmove(dst, bytes(self.buffers[src][:count]), count)
        return (0,)

    def cudaStreamSynchronize(self, stream: str):
        return (0,)


class FakeContext:
    """An execution context with TensorRT 10.x/11.x's named-tensor calls only, running the ONNX model on the bound buffers."""

    def __init__(self, device: FakeDevice, onnx_path: Path, bits: int) -> None:
        import onnxruntime

        self.device, self.bits, self.addresses, self.shape = device, bits, {}, None
        self.session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        assert name == md.INPUT_NAME
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.shape[0], self.bits)

    def set_tensor_address(self, name: str, address: int) -> bool:
        assert isinstance(address, int)
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle) -> bool:
        x = np.frombuffer(bytes(self.device.buffers[self.addresses[md.INPUT_NAME]]), np.float32).reshape(self.shape)
        (codes,) = self.session.run([md.CODES_OUTPUT], {md.INPUT_NAME: x})
        self.device.buffers[self.addresses[md.CODES_OUTPUT]][:] = codes.astype(np.float32).tobytes()
        return True


def test_engine_runner_moves_frames_through_named_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fashion_small) -> None:
    from tiny_model import export_tiny

    export_tiny(tmp_path / "m.onnx", bits=16)
    engine = tmp_path / "m.fp32.engine"
    engine.write_bytes(b"engine")
    write_engine_meta(engine, engine_meta(tmp_path / "m.onnx", "fp32", BatchProfile(1, 2, 4), 28, None, None))
    fake_tensorrt(monkeypatch, [(1, 3, 28, 28), (2, 3, 28, 28), (4, 3, 28, 28)], 16)
    device = FakeDevice()
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", device)
    context = FakeContext(device, tmp_path / "m.onnx", 16)
    trt = sys.modules["tensorrt"]
    engine_obj = trt.Runtime(None).deserialize_cuda_engine(b"")
    monkeypatch.setattr(engine_obj, "create_execution_context", lambda: context)
    frames = list(fashion_small.images[:10])  # 4 + 4 + 2: batches of the engine's maximum
    codes = Encoder(engine).encode(frames)
    assert np.array_equal(codes, Encoder(tmp_path / "m.onnx").encode(frames))
    assert device.buffers == {}  # every device buffer freed
    runner = Encoder(engine)._runner
    with pytest.raises(SadhError, match="batch of 5 exceeds the engine's maximum batch 4"):
        runner.run(np.zeros((5, 3, 28, 28), np.float32), [md.CODES_OUTPUT])


def fake_builder(monkeypatch: pytest.MonkeyPatch, version: str) -> list[tuple]:
    """A `tensorrt` stand-in with the builder API of `version`: TensorRT 11 has no precision BuilderFlags (removed with weak
    typing). Returns the calls the build makes."""
    from types import ModuleType

    calls: list[tuple] = []
    trt = ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 0, "__init__": lambda self, level: None})
    trt.BuilderFlag = SimpleNamespace(**({} if version.startswith("11") else {"FP16": "FP16", "INT8": "INT8"}))
    cache = SimpleNamespace(serialize=lambda: b"timing")
    config = SimpleNamespace(
        set_flag=lambda flag: calls.append(("set_flag", flag)),
        add_optimization_profile=lambda profile: calls.append(("profile", profile.shapes)),
        create_timing_cache=lambda data: cache,
        set_timing_cache=lambda c, ignore_mismatch: True,
        get_timing_cache=lambda: cache,
    )
    profile = SimpleNamespace(shapes=None)
    profile.set_shape = lambda name, lo, opt, hi: setattr(profile, "shapes", (name, lo, opt, hi))
    trt.Builder = lambda logger: SimpleNamespace(
        create_network=lambda flags: calls.append(("create_network", flags)) or "network",
        create_builder_config=lambda: config,
        create_optimization_profile=lambda: profile,
        build_serialized_network=lambda network, cfg: b"plan",
    )
    trt.OnnxParser = lambda network, logger: SimpleNamespace(parse=lambda data: calls.append(("parse", len(data))) or True)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return calls


@pytest.mark.parametrize(
    "version, precision, builder_flags",
    [
        ("10.3.0", "fp32", []),
        ("10.3.0", "fp16", ["FP16"]),  # JetPack 6: weakly typed, the precision is a builder flag
        ("10.3.0", "int8", ["INT8"]),  # explicit quantization: the Q/DQ model with the INT8 flag
        ("11.1.0", "fp16", []),  # strongly typed (always, no creation flag): the precision is the model's (.fp16.onnx)
        ("11.1.0", "int8", []),
    ],
)
def test_engine_build_calls_match_the_tensorrt_version(tmp_path, monkeypatch, version, precision, builder_flags):
    from sadh.export.trt_engine import build_engine
    from tiny_model import export_tiny

    calls = fake_builder(monkeypatch, version)
    onnx = tmp_path / "m.onnx"
    export_tiny(onnx, bits=16)
    engine = build_engine(onnx, tmp_path, "m", precision, BatchProfile(1, 2, 4), 28)
    assert engine.read_bytes() == b"plan" and read_engine_meta(engine).tensorrt == version
    assert ("create_network", 0) in calls
    assert [flag for name, flag in calls if name == "set_flag"] == builder_flags
    assert ("profile", (md.INPUT_NAME, (1, 3, 28, 28), (2, 3, 28, 28), (4, 3, 28, 28))) in calls
