"""The TensorRT engine file name and its sidecar JSON (written by sadh.export, read by the runtime's engine loader).

An engine only runs on the GPU model and TensorRT version that built it, so both are part of its
file name and recorded in a sidecar ``<engine>.json``; a loader refuses an engine whose sidecar
does not match the machine it runs on. The sidecar also holds the sadh metadata of the source model
(bits, preprocessing, class names), so an engine loads without its ONNX file. Where TensorRT is absent,
export writes the sidecar of the engine its printed `trtexec` command builds: GPU and TensorRT version
are then unknown (null), and the loader checks the engine's own input profile and code width instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Mapping, Sequence

from ..atomic import atomic_write_text
from ..errors import SadhError
from . import model as md
from .records import POSITIVE, RecordFormat, sidecar_path

ENGINE_SUFFIX = ".engine"
JETSON_MODEL_FILE = Path("/proc/device-tree/model")
REBUILD = "rebuild the engine with `sadh-cli export --engine`"


@dataclass(frozen=True)
class EngineMeta:
    """What an engine was built from and for; `gpu`/`tensorrt` are None for an engine built by trtexec.

    `metadata` is the sadh metadata of the source ONNX model (`sadh.sdk.formats.model`) with the engine's precision.
    """

    gpu: str | None
    tensorrt: str | None
    precision: str
    onnx: str
    onnx_sha256: str
    batch_min: Annotated[int, POSITIVE]
    batch_opt: Annotated[int, POSITIVE]
    batch_max: Annotated[int, POSITIVE]
    input_size: Annotated[int, POSITIVE]
    metadata: dict[str, str]

    def __post_init__(self) -> None:
        ENGINE_SIDECAR.check(vars(self), type(self).__name__)


ENGINE_SIDECAR = RecordFormat.of(EngineMeta, "a sadh engine sidecar", REBUILD)


def slug(text: str) -> str:
    """Lower-case `text` with runs of anything but letters and digits turned into one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def engine_path(out_dir: str | os.PathLike, stem: str, precision: str, gpu: str, tensorrt: str) -> Path:
    """`<out_dir>/<stem>.<precision>.<gpu>.trt<version>.engine`: one file per GPU model and TensorRT version."""
    return Path(out_dir) / f"{stem}.{precision}.{slug(gpu)}.trt{tensorrt}{ENGINE_SUFFIX}"


def write_engine_meta(engine: str | os.PathLike, meta: EngineMeta) -> Path:
    """Write the sidecar JSON of `engine` atomically and return its path."""
    path = sidecar_path(engine)
    atomic_write_text(path, json.dumps(asdict(meta), indent=2) + "\n")
    return path


def read_engine_meta(engine: str | os.PathLike) -> EngineMeta:
    """Read the sidecar JSON of `engine` (SadhError when it is missing or malformed)."""
    path = sidecar_path(engine)
    try:
        return EngineMeta(**ENGINE_SIDECAR.read(path))
    except FileNotFoundError:
        raise SadhError(
            f"{engine}: no sidecar {path.name}; build the engine with `sadh-cli export --engine` "
            "(without TensorRT it writes the sidecar and prints the trtexec command to run)"
        ) from None


def check_engine_meta(meta: EngineMeta, gpu: str, tensorrt: str, engine: str | os.PathLike = "engine") -> None:
    """Raise SadhError unless the engine was built for this GPU model and TensorRT version (unknown ones pass)."""
    problems = []
    if meta.gpu is not None and slug(meta.gpu) != slug(gpu):
        problems.append(f"built on GPU {meta.gpu!r}, this is {gpu!r}")
    if meta.tensorrt is not None and meta.tensorrt != tensorrt:
        problems.append(f"built with TensorRT {meta.tensorrt}, this is {tensorrt}")
    if problems:
        raise SadhError(f"{engine}: {'; '.join(problems)}; rebuild it here with `sadh-cli export --engine`")


def _shapes_text(shapes: Sequence[Sequence[int]]) -> str:
    """`1x3x28x28/8x3x28x28/...` for display."""
    return "/".join("x".join(map(str, shape)) for shape in shapes)


def check_engine_shapes(
    meta: EngineMeta,
    profile: Sequence[Sequence[int]],
    outputs: Mapping[str, Sequence[int]],
    engine: str | os.PathLike = "engine",
) -> None:
    """Raise SadhError unless the engine's (min, opt, max) input shapes and code outputs are those of its sidecar."""
    size = meta.input_size
    want = [(b, 3, size, size) for b in (meta.batch_min, meta.batch_opt, meta.batch_max)]
    problems = []
    have = [tuple(int(d) for d in shape) for shape in profile]
    if have != want:
        problems.append(f"its input profile (min/opt/max) is {_shapes_text(have)}, its sidecar says {_shapes_text(want)}")
    bits = md.read_model_metadata(meta.metadata, engine).bits
    for name, bits_per_value in ((md.CODES_OUTPUT, 1), (md.PACKED_OUTPUT, 8)):
        shape = outputs.get(name)
        if shape is not None and int(shape[-1]) * bits_per_value != bits:
            problems.append(f"its {name!r} output has {shape[-1]} columns, the sidecar's model has {bits} bits")
    if problems:
        raise SadhError(
            f"{engine}: {'; '.join(problems)}; the engine was not built from this sidecar's model and batch profile, "
            "rebuild it with `sadh-cli export --engine` (or the trtexec command it prints)"
        )


def current_gpu_name() -> str:
    """This machine's GPU model (nvidia-smi, else the Jetson device-tree model), or 'unknown-gpu'."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
            if out.returncode == 0 and names:
                return names[0]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return JETSON_MODEL_FILE.read_text(encoding="utf-8", errors="replace").strip("\x00\n ") or "unknown-gpu"
    except OSError:
        return "unknown-gpu"
