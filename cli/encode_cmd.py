"""`sadh-cli encode`: image files or folders -> packed codes (.npy); and the encoding helpers other commands share."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from ..sdk.errors import SadhError
from .chunks import Encoded, encode_in_chunks, file_identities, job_key, partial_path, pixel_blocks
from .options import BATCH_OPTION, MODEL_OPTION, check_outputs, say, warn, written_before_interrupt


def breaks_line(name: str) -> bool:
    """Whether `name` holds a character that ends a line for `str.splitlines` (a file list cannot hold it)."""
    return len(f"{name}x".splitlines()) != 1


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


def encode_items(encoder, data, index: np.ndarray, what: str = "images", partial: Path | None = None) -> Encoded:
    """Encode dataset items `index` with a progress bar (ids: the dataset indices encoded), resumable through `partial`.

    Unreadable files of path-based sets are reported (one line each) and left out.
    """
    index = np.asarray(index, dtype=np.int64)

    def encode_chunk(start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        part = index[start:stop]
        if data.images is not None:
            return encoder.encode(data.images[part]), part, []
        codes, failed = encoder.encode_files([data.paths[i] for i in part])
        bad = {path for path, _ in failed}
        return codes, np.array([i for i in part if data.paths[i] not in bad], np.int64), failed

    key = ""
    if partial is not None:
        items = file_identities(data.paths[i] for i in index) if data.images is None else pixel_blocks(data.images, index)
        key = job_key(encoder.path, items)
    result = encode_in_chunks(len(index), encoder.bits // 8, encode_chunk, what, partial, key)
    report_encoded(result, len(index))
    return result


def report_encoded(result: Encoded, total: int) -> None:
    """`report_failures` of a chunked encode; when no image was readable, its partial folder goes too (nothing to resume)."""
    if result.failures and len(result.failures) == total:
        result.discard_partial()
    report_failures(result.failures, total)


def report_failures(failures: list[tuple[str, str]], total: int) -> set[str]:
    """Warn about each unreadable image (one line each); SadhError if none of `total` was readable. Returns the bad paths."""
    if failures and len(failures) == total:
        raise SadhError(f"none of the {total} images could be read (first: {failures[0][1]})")
    for _, message in failures:
        warn(f"skipped {message}")
    return {path for path, _ in failures}


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
        from ..sdk.atomic import atomic_write_all, npy_bytes

        files = expand_images(images)
        listing = paths_out or out.with_suffix(".txt")
        listing_name = "--paths-out" if paths_out else "the file list (default: OUT with .txt)"
        check_outputs(
            {"--out": out, listing_name: listing}, [("--model", model), *(("an input image", f) for f in files)],
            folders={"its partial folder": partial_path(out)},
        )
        encoder = open_encoder(model, batch)

        def encode_chunk(start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
            unlisted = [(str(f), f"{f}: its name holds a line break, which {listing} (one file per line) cannot hold; rename it")
                        for f in files[start:stop] if breaks_line(str(f))]
            codes, failed = encoder.encode_files([f for f in files[start:stop] if not breaks_line(str(f))])
            bad = {path for path, _ in failed + unlisted}
            return codes, np.array([i for i in range(start, stop) if str(files[i]) not in bad], np.int64), unlisted + failed

        partial = partial_path(out)
        result = encode_in_chunks(len(files), encoder.bits // 8, encode_chunk, "images", partial, job_key(model, file_identities(files)))
        report_encoded(result, len(files))
        with written_before_interrupt(f"{out} and {listing} were written completely"):  # never one new, one old
            atomic_write_all({out: npy_bytes(result.codes), listing: b"".join(os.fsencode(files[i]) + b"\n" for i in result.ids)})
            result.discard_partial()
        speed = "all resumed" if result.ms_per_item is None else f"{result.ms_per_item:.1f} ms/image"
        say(
            f"wrote {out}: {len(result.codes)} codes of {encoder.bits} bits ({result.codes.nbytes} bytes) and {listing}; "
            f"{len(result.failures)} skipped; {result.seconds:.2f} s ({speed}, {encoder.precision})"
        )
