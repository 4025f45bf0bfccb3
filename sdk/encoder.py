"""`Encoder`: images -> packed hash codes with an exported model (onnxruntime, or a TensorRT engine).

The model carries everything the runtime needs in its metadata (see `sadh.sdk.formats.model`): the code
length, the preprocessing constants and the class names. Frames go through `sadh.sdk.preprocess`,
the same code training used, so a camera frame and a training image are prepared identically.

Thread safety: onnxruntime sessions may run from several threads at once; the TensorRT runner
serialises its own calls. The encoder holds no other mutable state.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .codes import pack_codes
from .data.images import read_image
from .errors import ModelError, SadhError, first_line
from .extras import require
from .formats import model as md
from .formats.engine import ENGINE_SUFFIX
from .image_limits import max_image_pixels
from .preprocess import Preprocess, as_frames, preprocess

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
DEFAULT_MAX_BATCH = 64


def default_providers() -> list[str]:
    """The onnxruntime providers the encoder uses by default: TensorRT, CUDA, CPU, those available."""
    available = require("onnxruntime").get_available_providers()
    return [p for p in PREFERRED_PROVIDERS if p in available]


def _is_zip(path: Path) -> bool:
    """Whether the file starts like a zip archive (what torch.save writes)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


class OrtRunner:
    """An onnxruntime session with the sadh input/output names resolved."""

    def __init__(self, path: Path, providers: Sequence[str] | None) -> None:
        """Open the ONNX model at `path` with `providers` (default: `default_providers()`)."""
        ort = require("onnxruntime")
        self.path = path
        available = ort.get_available_providers()
        chosen = [providers] if isinstance(providers, str) else list(providers) if providers is not None else default_providers()
        missing = [p for p in chosen if p not in available]
        if missing or not chosen:
            raise SadhError(f"onnxruntime provider(s) {missing or chosen} not available here; available: {available}")
        try:
            self.session = ort.InferenceSession(str(path), providers=chosen)
        except Exception as e:  # onnxruntime raises its own pybind exception types
            if _is_zip(path):
                raise SadhError(f"{path}: a training checkpoint (torch zip), not a model to run; export it: sadh-cli export {path}") from None
            reason = first_line(e)
            raise SadhError(f"{path}: not a loadable ONNX model ({reason[:200]})") from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        inputs = {i.name: i for i in self.session.get_inputs()}
        if md.INPUT_NAME not in inputs:
            raise SadhError(f"{path}: the model has no input named {md.INPUT_NAME!r} (inputs: {sorted(inputs)}); re-export it")
        spec = inputs[md.INPUT_NAME]
        self.input_dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in spec.shape)
        self.fixed_batch = self.input_shape[0] if self.input_shape else None
        self.max_batch = self.fixed_batch
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = list(self.session.get_providers())

    def run(self, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        """Run the model on a preprocessed batch; return the named outputs (a failure is the model's: ModelError)."""
        try:
            return self.session.run(outputs, {md.INPUT_NAME: x.astype(self.input_dtype, copy=False)})
        except Exception as e:  # onnxruntime raises its own pybind exception types; inputs here are always well formed
            reason = first_line(e)
            raise ModelError(f"{self.path}: onnxruntime could not run the model ({reason[:200]})") from None


def open_runner(path: Path, providers: Sequence[str] | None) -> Any:
    """An `OrtRunner` for an ONNX file, or a `TrtRunner` for a TensorRT engine file."""
    if path.suffix.lower() == ENGINE_SUFFIX:
        from .trt_runner import TrtRunner

        return TrtRunner(path)
    return OrtRunner(path, providers)


class Encoder:
    """Encode BGR/gray/BGRA uint8 frames of any size into packed hash codes with an exported model."""

    def __init__(
        self, path: str | os.PathLike, providers: Sequence[str] | None = None, max_batch: int = DEFAULT_MAX_BATCH
    ) -> None:
        """Open `path` (ONNX, or a TensorRT engine when tensorrt is installed) and read its metadata."""
        self.path = Path(path)
        if self.path.is_dir():
            raise SadhError(f"{self.path} is a folder, not a model file; pass the .onnx or .engine file in it")
        if not self.path.is_file():
            raise SadhError(f"{self.path}: model file not found")
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise SadhError(f"max_batch must be a positive integer, got {max_batch!r}")
        max_batch = int(max_batch)
        self._runner = open_runner(self.path, providers)
        meta = self._runner.metadata
        read = md.read_model_metadata(meta, self.path)
        self._bits, self._preprocess, self._class_names = read.bits, read.preprocess, read.class_names
        self._check_input_shape()
        self.metadata = dict(meta)
        outputs = self._runner.output_names
        if md.PACKED_OUTPUT not in outputs and md.CODES_OUTPUT not in outputs:
            raise SadhError(f"{self.path}: the model has neither a {md.CODES_OUTPUT!r} nor a {md.PACKED_OUTPUT!r} output")
        cap = self._runner.max_batch
        self.max_batch = min(max_batch, cap) if cap else max_batch

    def _check_input_shape(self) -> None:
        """Raise SadhError unless the model's static input dims fit (N, 3, S, S) with S the metadata's input size."""
        size = self._preprocess.input_size
        shape = self._runner.input_shape
        if len(shape) != 4 or any(d is not None and d != want for d, want in zip(shape[1:], (3, size, size))):
            dims = "is " + "x".join("?" if d is None else str(d) for d in shape) if shape else "has no declared shape"
            raise SadhError(
                f"{self.path}: the model input {dims} but its {md.PREPROCESS} metadata says {size}x{size} RGB images "
                f"(Nx3x{size}x{size}); re-export it with `sadh-cli export`"
            )

    @property
    def bits(self) -> int:
        """Code length in bits."""
        return self._bits

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing constants the model was trained with."""
        return self._preprocess

    @property
    def class_names(self) -> list[str]:
        """Class names of the training set (empty when the model does not record them)."""
        return list(self._class_names)

    @property
    def providers(self) -> list[str]:
        """Execution providers in use (onnxruntime names, or ["TensorRT"] for an engine)."""
        return list(self._runner.providers)

    @property
    def precision(self) -> str:
        """The precision recorded at export (fp32, fp16, int8-qdq, int8-cpu), or "unknown"."""
        return self.metadata.get(md.PRECISION, "unknown")

    @property
    def weights(self) -> str | None:
        """Digest of the trained weights, the same for every precision exported from one checkpoint (None: not recorded)."""
        return self.metadata.get(md.WEIGHTS)

    def _run_batches(self, images: np.ndarray | Iterable[np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """Preprocess and run the frames in batches of `max_batch`; return the outputs, rows concatenated.

        A float output holding NaN or inf (a broken model) raises SadhError instead of becoming codes.
        """
        frames = as_frames(images)
        if len(frames) == 0:
            raise SadhError("no images to encode")
        fixed = self._runner.fixed_batch
        parts = []
        for start in range(0, len(frames), self.max_batch):
            x = preprocess(frames[start : start + self.max_batch], self._preprocess)
            n = x.shape[0]
            if fixed and n < fixed:
                x = np.concatenate([x, np.zeros((fixed - n, *x.shape[1:]), x.dtype)])
            parts.append([np.asarray(out)[:n] for out in self._runner.run(x, outputs)])
        results = [np.concatenate(rows) for rows in zip(*parts)]
        for name, out in zip(outputs, results):
            self._check_output(name, out)
        return results

    def _check_output(self, name: str, out: np.ndarray) -> None:
        """ModelError unless output `name` is what the sadh format says: `codes` float (n, bits), `packed` uint8
        (n, bits/8), all finite."""
        bits_per_value, kind = (1, "float") if name == md.CODES_OUTPUT else (8, "uint8")
        if out.ndim != 2 or out.shape[1] * bits_per_value != self._bits:
            made = f"{out.shape[1] * bits_per_value}-bit codes" if out.ndim == 2 else f"an array of shape {out.shape}"
            raise ModelError(
                f"{self.path}: the model outputs {made} but its metadata says {self._bits} (its {name!r} output); "
                "the model is at fault (re-export it)"
            )
        if not (out.dtype == np.uint8 if kind == "uint8" else np.issubdtype(out.dtype, np.floating)):
            raise ModelError(f"{self.path}: the model's {name!r} output is {out.dtype}, not {kind}; the model is at fault (re-export it)")
        if kind == "float" and not np.isfinite(out).all():
            raise ModelError(f"{self.path}: non-finite model outputs (NaN or inf in {name!r}); re-export or retrain the model")

    def encode(self, images: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """One frame or a batch/list of BGR/gray/BGRA uint8 frames (see `as_frames`) -> packed uint8 codes (n, bits/8)."""
        names = self._runner.output_names
        if md.PACKED_OUTPUT in names:
            checked = [md.CODES_OUTPUT] if md.CODES_OUTPUT in names else []  # fetched only to catch NaN outputs
            return self._run_batches(images, [md.PACKED_OUTPUT, *checked])[0]
        return pack_codes(self._continuous(images))

    def _continuous(self, images: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """The continuous code output as float32 (n, bits)."""
        return self._run_batches(images, [md.CODES_OUTPUT])[0].astype(np.float32, copy=False)

    def encode_continuous(self, images: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """The continuous (tanh) codes as float32 (n, bits); their signs are the hash bits."""
        if md.CODES_OUTPUT not in self._runner.output_names:
            raise SadhError(f"{self.path}: the model has no continuous {md.CODES_OUTPUT!r} output")
        return self._continuous(images)

    def encode_files(self, paths: Iterable[str | os.PathLike]) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Read and encode image files: (codes of the readable files in order, [(path, error)] of the others).

        Decoded images wait in a batch of at most `max_batch` images and `max_image_pixels()` pixels in all (one image
        alone may have that many), so memory is bounded by pixels, not by the number of images."""
        codes = [np.zeros((0, self._bits // 8), np.uint8)]
        failures: list[tuple[str, str]] = []
        batch: list[tuple[str, np.ndarray]] = []
        pixels, budget = 0, max_image_pixels()
        for path in paths:
            try:
                image = read_image(path)
            except SadhError as e:
                failures.append((str(path), str(e)))
                continue
            if batch and pixels + image.shape[0] * image.shape[1] > budget:
                codes.append(self._encode_or_isolate(batch, failures))
                batch, pixels = [], 0
            batch.append((str(path), image))
            pixels += image.shape[0] * image.shape[1]
            if len(batch) == self.max_batch:
                codes.append(self._encode_or_isolate(batch, failures))
                batch, pixels = [], 0
        if batch:
            codes.append(self._encode_or_isolate(batch, failures))
        return np.concatenate(codes), failures

    def _encode_or_isolate(self, batch: list[tuple[str, np.ndarray]], failures: list[tuple[str, str]]) -> np.ndarray:
        """Encode decoded files; if the batch fails for its inputs, encode them one by one and record the failing ones
        (a ModelError is raised: it would fail every file)."""
        try:
            return self.encode([frame for _, frame in batch])
        except ModelError:
            raise
        except SadhError:
            pass
        codes = [np.zeros((0, self._bits // 8), np.uint8)]
        for path, frame in batch:
            try:
                codes.append(self.encode(frame))
            except ModelError:
                raise
            except SadhError as e:
                failures.append((path, f"{path}: {e}"))
        return np.concatenate(codes)

    def __repr__(self) -> str:
        return f"Encoder({str(self.path)!r}, bits={self._bits}, precision={self.precision}, providers={self.providers})"
