"""TensorRT engines from the exported ONNX: built with the `tensorrt` Python API when it is installed,
otherwise the equivalent `trtexec` command lines are returned, and the sidecar of each engine they
build is written already, so that engine loads in `sadh.sdk` like one built here.

TensorRT 10 (JetPack 6) builds weakly typed networks with BuilderFlag.FP16/INT8 (trtexec --fp16/--int8);
TensorRT >= 11 only builds strongly typed networks, whose precision comes from the ONNX itself (the
.fp16.onnx model, or the Q/DQ model for INT8) and whose trtexec has no precision flags. INT8 is explicit
quantisation from the Q/DQ model (no calibrator API).
"""
from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import onnx as onnx_lib

from ..sdk.atomic import atomic_write_bytes
from ..sdk.errors import SadhError
from ..sdk.formats import model as keys
from ..sdk.formats.model import read_stamp
from ..sdk.formats.engine import (
    ENGINE_SUFFIX,
    EngineMeta,
    check_engine_meta,
    current_gpu_name,
    engine_path,
    read_engine_meta,
    slug,
    write_engine_meta,
)
from .settings import BatchProfile

STRONGLY_TYPED_FROM = 11  # first TensorRT major version without weakly typed networks
ENGINE_MODELS = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-qdq"}  # engine precision -> ONNX model precision
ENGINE_PRECISIONS = tuple(ENGINE_MODELS)
TRTEXEC_VERSIONS = (("10", "TensorRT <= 10"), (str(STRONGLY_TYPED_FROM), f"TensorRT >= {STRONGLY_TYPED_FROM}"))


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None when `tensorrt` is not importable."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return str(trt.__version__)


def strongly_typed(version: str) -> bool:
    """Whether TensorRT `version` builds only strongly typed networks (precision from the ONNX, no precision flags)."""
    return int(version.split(".")[0]) >= STRONGLY_TYPED_FROM


def source_onnx(onnx_paths: dict[str, Path], precision: str, version: str) -> Path:
    """The ONNX file TensorRT `version` builds an engine of `precision` from (the FP16 model only for strongly typed builds)."""
    if precision not in ENGINE_PRECISIONS:
        raise SadhError(f"unknown engine precision {precision!r}; choose one of {', '.join(ENGINE_PRECISIONS)}")
    key = "fp32" if precision == "fp16" and not strongly_typed(version) else ENGINE_MODELS[precision]
    if key not in onnx_paths:
        raise SadhError(f"a {precision} engine needs the {key} ONNX model; export with --{precision}")
    return onnx_paths[key]


def timing_cache_path(out_dir: Path, gpu: str, version: str) -> Path:
    """One timing cache per GPU model and TensorRT version, reused by every build in `out_dir`."""
    return out_dir / f"timing.{slug(gpu)}.trt{version}.cache"


def trtexec_command(
    onnx: Path, engine: Path, precision: str, batch: BatchProfile, size: int, timing_cache: Path, version: str
) -> str:
    """The `trtexec` command line of TensorRT `version` that builds the engine `build_engine` would build there."""
    lo, opt, hi = ("x".join(map(str, s)) for s in batch.shapes(size))
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    if not strongly_typed(version):
        args += {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8"]}[precision]
    args += [
        f"--minShapes={keys.INPUT_NAME}:{lo}",
        f"--optShapes={keys.INPUT_NAME}:{opt}",
        f"--maxShapes={keys.INPUT_NAME}:{hi}",
        f"--timingCacheFile={timing_cache}",
    ]
    return shlex.join(args)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def engine_meta(
    onnx: Path, precision: str, batch: BatchProfile, size: int, gpu: str | None, version: str | None
) -> EngineMeta:
    """The sidecar of an engine of `precision` built from `onnx`, on `gpu` with TensorRT `version` (None: by trtexec)."""
    data = onnx.read_bytes()
    metadata = {**read_stamp(onnx_lib.load_from_string(data)), keys.PRECISION: ENGINE_MODELS[precision]}
    digest = hashlib.sha256(data).hexdigest()
    return EngineMeta(gpu, version, precision, onnx.name, digest, batch.min, batch.opt, batch.max, size, metadata)


def trtexec_builds(
    onnx_paths: dict[str, Path], out_dir: Path, stem: str, precision: str, batch: BatchProfile, size: int
) -> list[tuple[Path, str]]:
    """Write the sidecar of each engine the trtexec commands for `precision` build; return (sidecar, command) pairs.

    fp32 is one command for every TensorRT version; fp16 and int8 get one for TensorRT <= 10 and one for >= 11
    (other flags, for fp16 another ONNX model), each with its own engine file and a comment naming its versions.
    """
    split = precision != "fp32"
    builds = []
    for version, label in TRTEXEC_VERSIONS if split else TRTEXEC_VERSIONS[:1]:
        tag = f".trt{version}" if split else ""
        src = source_onnx(onnx_paths, precision, version)
        engine = out_dir / f"{stem}.{precision}{tag}{ENGINE_SUFFIX}"
        sidecar = write_engine_meta(engine, engine_meta(src, precision, batch, size, None, None))
        command = trtexec_command(src, engine, precision, batch, size, out_dir / f"timing{tag}.cache", version)
        builds.append((sidecar, f"{command}  # {label}" if split else command))
    return builds


def cached_engine(engine: Path, onnx: Path, batch: BatchProfile, gpu: str, version: str) -> bool:
    """True when `engine` exists and was built here from this exact ONNX file and batch profile."""
    if not engine.is_file():
        return False
    try:
        meta = read_engine_meta(engine)
        check_engine_meta(meta, gpu, version, engine)
    except SadhError:
        return False
    return meta.onnx_sha256 == _sha256(onnx) and (meta.batch_min, meta.batch_opt, meta.batch_max) == (
        batch.min,
        batch.opt,
        batch.max,
    )


def build_engine(onnx: Path, out_dir: Path, stem: str, precision: str, batch: BatchProfile, size: int) -> Path:
    """Build (or reuse from the cache) a serialized engine for this GPU and TensorRT version; returns its path."""
    import tensorrt as trt

    version, gpu = str(trt.__version__), current_gpu_name()
    engine = engine_path(out_dir, stem, precision, gpu, version)
    if cached_engine(engine, onnx, batch, gpu, version):
        return engine
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = strongly_typed(version)
    network = builder.create_network(0)  # 10.x: weakly typed; 11.x: strongly typed always (its STRONGLY_TYPED flag is deprecated)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SadhError(f"TensorRT {version} cannot parse {onnx.name}: {errors}")
    config = builder.create_builder_config()
    if not strong and precision != "fp32":
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    profile.set_shape(keys.INPUT_NAME, *batch.shapes(size))
    config.add_optimization_profile(profile)
    cache_file = timing_cache_path(out_dir, gpu, version)
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SadhError(f"TensorRT {version} failed to build a {precision} engine from {onnx.name} (see its log above)")
    atomic_write_bytes(engine, bytes(serialized))
    atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    write_engine_meta(engine, engine_meta(onnx, precision, batch, size, gpu, version))
    return engine
