"""`export_model`: checkpoint -> ONNX FP32 [+ FP16, INT8 Q/DQ (TensorRT), INT8 CPU, TensorRT engines],
each parity-checked against torch on real validation images."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from ..sdk.atomic import interrupts_deferred, make_folder, unwritable_reason
from ..sdk.data import LabeledImages, Split
from ..sdk.errors import SadhError
from ..sdk.formats import model as md
from ..sdk.formats.model import read_stamp
from ..train.checkpoint import ModelInfo, load_model
from .int8 import (
    CPU_FLAVOUR, TENSORRT_FLAVOUR, check_qdq, modelopt_available, pack_nodes, preprocess_for_quantization, quantize_int8,
    quantize_qdq_modelopt,
)
from .onnx_model import DEFAULT_OPSET, convert_fp16, export_onnx
from .parity import (
    Parity, checkpoint_dataset, compare_codes, cpu_session, model_inputs, require_parity, run_codes, spread, torch_codes,
)
from .settings import BatchProfile, ExportSettings, QdqTool
from .trt_engine import build_engine, source_onnx, tensorrt_version, trtexec_builds

PARITY_IMAGES = 256
WARNING_PREFIX = "warning: "  # starts each line of `export_model`'s log that is a warning
STAGING_PREFIX = ".sadh-export-"  # + host + "-" + the exporting process's id + "-" + random: the staging folder in OUT
# the files an export of STEM writes (STEM + suffix): a re-export removes those it does not rewrite
EXPORT_SUFFIXES = (".onnx", ".fp16.onnx", f".{TENSORRT_FLAVOUR.precision}.onnx", f".{CPU_FLAVOUR.precision}.onnx", ".calib.json",
                   md.SPLIT_SUFFIX)


@dataclass(frozen=True)
class Artifact:
    """One file an export wrote."""

    path: Path
    precision: str
    size_bytes: int
    seconds: float
    parity: Parity | None = None


@dataclass
class ExportResult:
    """What `export_model` produced; `trtexec` holds the engine commands to run where TensorRT is absent."""

    info: ModelInfo
    artifacts: list[Artifact] = field(default_factory=list)
    trtexec: list[str] = field(default_factory=list)

    def path(self, precision: str) -> Path:
        """The file of one precision (fp32, fp16, int8-qdq, int8-cpu, calib, split, or an engine's precision)."""
        for a in self.artifacts:
            if a.precision == precision:
                return a.path
        raise SadhError(f"this export produced no {precision} file")


def export_model(
    checkpoint: Path,
    out_dir: Path,
    settings: ExportSettings = ExportSettings(),
    *,
    parity_images: int = PARITY_IMAGES,
    packed: bool = True,
    opset: int = DEFAULT_OPSET,
    data: tuple[LabeledImages, Split] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> ExportResult:
    """Export a checkpoint as `settings` say; every model must agree with torch on `parity_images` validation images
    or SadhError.

    Beside the models goes STEM.split.npz, the split the model was trained on (that of `data` when given).
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    unwritable = unwritable_reason(out_dir, folder=True)
    if unwritable:
        raise SadhError(f"cannot export to {out_dir}: {unwritable}")
    if settings.int8 and settings.qdq_tool == QdqTool.MODELOPT.value and not modelopt_available():
        raise SadhError("--qdq-tool modelopt needs NVIDIA ModelOpt: pip install 'nvidia-modelopt[onnx]'")
    model, info = load_model(checkpoint)
    data, split = data if data is not None else checkpoint_dataset(checkpoint)
    val = model_inputs(data, spread(split.query, parity_images), info.preprocess)
    reference = torch_codes(model, val)
    stem = checkpoint.stem
    result = ExportResult(info)
    passed: list[tuple[Path, str, float, Parity | None]] = []

    def add(staged: Path, precision: str, started: float, threshold: float | None) -> Path:
        """Parity-check a file written to the staging folder (a rejected one stops the export before any file moves)."""
        seconds, parity = time.perf_counter() - started, None
        if threshold is not None:
            parity = compare_codes(reference, run_codes(cpu_session(staged), val))
            require_parity(parity, threshold, staged.name)  # first: a NaN model's bits all read as agreeing
            log(f"{staged.name}: parity {parity.summary()}")
        passed.append((staged, precision, seconds, parity))
        return staged

    make_folder(out_dir)
    remove_stale_staging(out_dir, log)
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-", dir=out_dir) as tmp:  # same file system: os.replace is atomic
        staging = Path(tmp)
        t = time.perf_counter()
        fp32 = export_onnx(model, info, staging / f"{stem}.onnx", packed=packed, opset=opset)
        fp32_path = add(staging / f"{stem}.onnx", "fp32", t, settings.parity_threshold)
        t = time.perf_counter()
        # beside the models: eval / index build use it by default for the data it records it was made for (the labels
        # the run trained on, when it recorded them: data edited since is then not mistaken for the training data)
        if split.fits(data.labels) is False:
            log(f"{WARNING_PREFIX}the labels of {data.name} changed since the run was trained; eval and index build will not "
                "take its training split for this data")
        (split if split.fingerprint is not None else split.made_for(data.labels)).save(staging / f"{stem}{md.SPLIT_SUFFIX}")
        add(staging / f"{stem}{md.SPLIT_SUFFIX}", "split", t, None)
        if settings.fp16:
            t = time.perf_counter()
            convert_fp16(fp32, staging / f"{stem}.fp16.onnx")
            add(staging / f"{stem}.fp16.onnx", "fp16", t, settings.fp16_threshold)
        if settings.int8:
            calib = model_inputs(data, spread(split.train, settings.calib_images), info.preprocess)
            if len(calib) < settings.calib_images:
                log(f"calibrating INT8 on {len(calib)} training images (fewer than the {settings.calib_images} asked for)")
            cache = staging / f"{stem}.calib.json"  # fresh: ranges of an older export must not leak into this one
            prepared = staging / "prepared.onnx"
            preprocess_for_quantization(fp32_path, prepared)
            for flavour in (TENSORRT_FLAVOUR, CPU_FLAVOUR):
                t = time.perf_counter()
                staged = staging / f"{stem}.{flavour.precision}.onnx"
                if flavour is TENSORRT_FLAVOUR and settings.qdq_tool == QdqTool.MODELOPT.value:
                    quantized = quantize_qdq_modelopt(fp32_path, staged, calib, settings.calib_method, pack_nodes(fp32))
                else:
                    quantized = quantize_int8(prepared, staged, calib, flavour, settings.calib_method, cache)
                if flavour is TENSORRT_FLAVOUR:
                    check_qdq(quantized, staged.name)
                add(staged, flavour.precision, t, settings.int8_threshold)
            add(cache, "calib", time.perf_counter(), None)
        _publish(passed, out_dir, stem, read_stamp(fp32)[md.WEIGHTS], result, log)
    if settings.engine:
        _engines(result, out_dir, stem, settings.fp16, settings.int8, settings.batch, log)
    return result


def remove_stale_staging(out_dir: Path, log: Callable[[str], None]) -> None:
    """Delete the staging folders in `out_dir` of exports on this host whose process is gone (killed with kill -9, power
    loss); a running export's folder stays, and so does every folder of another host (a shared file system)."""
    for folder in sorted(out_dir.glob(f"{STAGING_PREFIX}{_host()}-*-*")):
        pid = folder.name[len(f"{STAGING_PREFIX}{_host()}-") :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            log(f"removed {folder.name}: the staging folder of an export that was killed")


def _host() -> str:
    """This machine's name as it may appear in a folder name."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no process can have this id
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _publish(
    passed: list[tuple[Path, str, float, Parity | None]], out_dir: Path, stem: str, weights: str, result: ExportResult,
    log: Callable[[str], None],
) -> None:
    """Move every staged file into `out_dir` once all passed. Of the files an earlier export of `stem` left that this one
    did not rewrite, keep the models of the same trained `weights` (and their calibration cache) and remove the others:
    they belong to another model. Ctrl-C waits for it."""
    with interrupts_deferred():
        for staged, precision, seconds, parity in passed:
            path = out_dir / staged.name
            os.replace(staged, path)
            result.artifacts.append(Artifact(path, precision, path.stat().st_size, seconds, parity))
        written = {staged.name for staged, *_ in passed}
        kept_int8 = False
        for path in (out_dir / f"{stem}{suffix}" for suffix in EXPORT_SUFFIXES):  # models before the calibration cache
            if path.name in written or not path.is_file():
                continue
            same = exported_from(path) == weights if path.suffix == ".onnx" else path.name.endswith(".calib.json") and kept_int8
            if same:
                kept_int8 = kept_int8 or ".int8-" in path.name
                log(f"kept {path.name}: an earlier export of the same trained weights")
            else:
                path.unlink()
                log(f"removed {path.name}: left by an earlier export, it belongs to another model")


def exported_from(path: Path) -> str | None:
    """The trained-weights digest an ONNX file records, None when it records none or is not a readable model."""
    try:
        return read_stamp(onnx.load(str(path))).get(md.WEIGHTS)
    except Exception:  # noqa: BLE001 - a damaged or foreign file: not ours to keep
        return None


def _engines(
    result: ExportResult, out_dir: Path, stem: str, fp16: bool, int8: bool, batch: BatchProfile, log: Callable[[str], None]
) -> None:
    """Build the engines of the asked precisions, or (TensorRT absent) write their sidecars and record the trtexec commands."""
    precisions = [p for p, on in (("fp16", fp16), ("int8", int8)) if on] or ["fp32"]
    onnx_paths = {a.precision: a.path for a in result.artifacts}
    version = tensorrt_version()
    size = result.info.preprocess.input_size
    for precision in precisions:
        if version is None:
            for sidecar, command in trtexec_builds(onnx_paths, out_dir, stem, precision, batch, size):
                log(f"{sidecar.name}: sidecar of the engine the trtexec command below builds (keep them together)")
                result.trtexec.append(command)
            continue
        src = source_onnx(onnx_paths, precision, version)
        t = time.perf_counter()
        path = build_engine(src, out_dir, stem, precision, batch, size)
        log(f"{path.name}: built from {src.name}")
        result.artifacts.append(Artifact(path, f"engine-{precision}", path.stat().st_size, time.perf_counter() - t))
