"""`sadh-cli encode`: image files or folders -> packed codes (.npy); and the encoding helpers other commands share."""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import typer

from ..sdk.errors import SadhError
from .options import BATCH_OPTION, MODEL_OPTION, check_outputs, warn

PROGRESS_CHUNK = 1024  # dataset items encoded between progress updates


def expand_images(inputs: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their image files (recursively, sorted); SadhError if none."""
    from ..sdk.data.imagefolder import IMAGE_SUFFIXES

    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SadhError(f"{item}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            paths += found
        else:
            paths.append(item)
    if not paths:
        raise SadhError("no images given")
    return paths


def open_encoder(model: Path, batch: int = 64):
    """An Encoder for `model` (ONNX or TensorRT engine)."""
    from ..sdk.encoder import Encoder

    return Encoder(model, max_batch=batch)


def encode_items(encoder, data, index: np.ndarray, what: str = "images") -> tuple[np.ndarray, np.ndarray]:
    """Encode dataset items `index` with a progress bar: (packed codes, the indices that were encoded).

    Unreadable files of path-based sets are reported (one line each) and left out.
    """
    from rich.progress import Progress

    index = np.asarray(index, dtype=np.int64)
    codes, kept, failures = [], [], []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"encoding {len(index)} {what}", total=len(index))
        for start in range(0, len(index), PROGRESS_CHUNK):
            part = index[start : start + PROGRESS_CHUNK]
            if data.images is not None:
                codes.append(encoder.encode(data.images[part]))
                kept.append(part)
            else:
                got, failed = encoder.encode_files([data.paths[i] for i in part])
                bad = {path for path, _ in failed}
                failures += failed
                codes.append(got)
                kept.append(np.array([i for i in part if data.paths[i] not in bad], np.int64))
            progress.advance(task, len(part))
    report_failures(failures, len(index))
    return np.concatenate(codes), np.concatenate(kept)


def report_failures(failures: list[tuple[str, str]], total: int) -> set[str]:
    """Warn about each unreadable image (one line each); SadhError if none of `total` was readable. Returns the bad paths."""
    if failures and len(failures) == total:
        raise SadhError(f"none of the {total} images could be read (first: {failures[0][1]})")
    for _, message in failures:
        warn(f"skipped {message}")
    return {path for path, _ in failures}


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write a .npy file atomically (no pickle)."""
    from ..sdk.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def timed(fn: Callable, *args, **kwargs):
    """(result of fn(*args, **kwargs), seconds it took)."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def register(app: typer.Typer) -> None:
    """Add the `encode` command to the app."""

    @app.command("encode")
    def encode(
        images: List[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
        model: Path = MODEL_OPTION,
        out: Path = typer.Option(Path("codes.npy"), "--out", "-o", help="Where to write the packed uint8 codes (n, bits/8)."),
        batch: int = BATCH_OPTION,
        paths_out: Optional[Path] = typer.Option(None, help="Where to list the encoded files, one per row (default: OUT with .txt)."),
    ) -> None:
        """Encode images into packed hash codes (.npy) plus the list of encoded files."""
        from ..sdk.atomic import atomic_write_text

        files = expand_images(images)
        listing = paths_out or out.with_suffix(".txt")
        listing_name = "--paths-out" if paths_out else "the file list (default: OUT with .txt)"
        check_outputs({"--out": out, listing_name: listing}, [("--model", model), *(("an input image", f) for f in files)])
        encoder = open_encoder(model, batch)
        (codes, failures), seconds = timed(encoder.encode_files, files)
        bad = report_failures(failures, len(files))
        save_npy(out, codes)
        atomic_write_text(listing, "".join(f"{p}\n" for p in map(str, files) if p not in bad))
        typer.echo(
            f"wrote {out}: {len(codes)} codes of {encoder.bits} bits ({codes.nbytes} bytes) and {listing}; "
            f"{len(failures)} skipped; {seconds:.2f} s ({1000 * seconds / len(files):.1f} ms/image, {encoder.precision})"
        )
