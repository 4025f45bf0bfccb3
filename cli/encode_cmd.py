"""`sadh-cli encode`: image files or folders -> packed codes (.npy) and the list of the files encoded."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .options import BATCH_OPTION, MODEL_OPTION, check_outputs, progress_bar, say


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
        from ..sdk.encoder import Encoder
        from ..sdk.encoding import encode_files_to, expand_images, partial_path

        files = expand_images(images)
        listing = paths_out or out.with_suffix(".txt")
        listing_name = "--paths-out" if paths_out else "the file list (default: OUT with .txt)"
        check_outputs(
            {"--out": out, listing_name: listing}, [("--model", model), *(("an input image", f) for f in files)],
            folders={"its partial folder": partial_path(out)},
        )
        encoder = Encoder(model, max_batch=batch)
        result = encode_files_to(encoder, files, out, listing, progress_bar)
        speed = "all resumed" if result.ms_per_item is None else f"{result.ms_per_item:.1f} ms/image"
        say(
            f"wrote {out}: {len(result.codes)} codes of {encoder.bits} bits ({result.codes.nbytes} bytes) and {listing}; "
            f"{len(result.failures)} skipped; {result.seconds:.2f} s ({speed}, {encoder.precision})"
        )
