"""TensorRT engine naming and sidecar JSON (written by sadh.export, read by the runtime's engine loader).

An engine only runs on the GPU model and TensorRT version that built it, so both are part of its
file name and recorded in a sidecar ``<engine>.json``; a loader refuses an engine whose sidecar
does not match the machine it runs on.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .atomic import atomic_write_text
from .errors import SadhError

ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
JETSON_MODEL_FILE = Path("/proc/device-tree/model")


@dataclass(frozen=True)
class EngineMeta:
    """What an engine was built from and for."""

    gpu: str
    tensorrt: str
    precision: str
    onnx: str
    onnx_sha256: str
    batch_min: int
    batch_opt: int
    batch_max: int
    input_size: int


def slug(text: str) -> str:
    """Lower-case `text` with runs of anything but letters and digits turned into one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def engine_path(out_dir: str | os.PathLike, stem: str, precision: str, gpu: str, tensorrt: str) -> Path:
    """`<out_dir>/<stem>.<precision>.<gpu>.trt<version>.engine`: one file per GPU model and TensorRT version."""
    return Path(out_dir) / f"{stem}.{precision}.{slug(gpu)}.trt{tensorrt}{ENGINE_SUFFIX}"


def sidecar_path(engine: str | os.PathLike) -> Path:
    """The sidecar JSON beside an engine file."""
    return Path(f"{engine}{SIDECAR_SUFFIX}")


def write_engine_meta(engine: str | os.PathLike, meta: EngineMeta) -> Path:
    """Write the sidecar JSON of `engine` atomically and return its path."""
    path = sidecar_path(engine)
    atomic_write_text(path, json.dumps(asdict(meta), indent=2) + "\n")
    return path


def read_engine_meta(engine: str | os.PathLike) -> EngineMeta:
    """Read the sidecar JSON of `engine` (SadhError when it is missing or malformed)."""
    path = sidecar_path(engine)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return EngineMeta(**{k: raw[k] for k in EngineMeta.__dataclass_fields__})
    except FileNotFoundError:
        raise SadhError(f"{engine}: no sidecar {path.name}; rebuild the engine with `sadh-cli export --engine`") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SadhError(f"{path}: not a sadh engine sidecar ({e})") from None


def check_engine_meta(meta: EngineMeta, gpu: str, tensorrt: str, engine: str | os.PathLike = "engine") -> None:
    """Raise SadhError unless the engine was built for this GPU model and TensorRT version."""
    problems = []
    if slug(meta.gpu) != slug(gpu):
        problems.append(f"built on GPU {meta.gpu!r}, this is {gpu!r}")
    if meta.tensorrt != tensorrt:
        problems.append(f"built with TensorRT {meta.tensorrt}, this is {tensorrt}")
    if problems:
        raise SadhError(f"{engine}: {'; '.join(problems)}; rebuild it here with `sadh-cli export --engine`")


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
