"""`sadh-cli search`: the nearest indexed items of query images, as a table per query."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the `search` command to the app."""

    @app.command("search")
    def search(
        images: List[Path] = typer.Argument(..., help="Query image files and/or folders."),
        index: Path = typer.Option(..., "--index", "-i", help="Index file written by `sadh-cli index build`."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Exported model (default: the one the index was built with)."),
        k: int = typer.Option(10, "-k", "--k", min=1, help="Neighbours per query."),
        mih: bool = typer.Option(
            False, "--mih",
            help="Search with multi-index hashing: the same results as the flat scan, many times faster per query on "
            "large indexes of a trained model's (clustered) codes; queries it cannot speed up (random-like codes) fall "
            "back to the flat scan one by one. Its tables are built first (~0.2 s per million codes), so it pays off "
            "with many query images over a large index.",
        ),
    ) -> None:
        """Encode query images and print their k nearest indexed items (id, Hamming distance, label, path)."""
        from .tables import new_table

        from ..sdk.formats.index_sidecar import Sidecar
        from ..sdk.retriever import load_index
        from .encode_cmd import expand_images, report_failures
        from .index_cmd import index_encoder
        from .options import make_console, shown, warn

        hindex = load_index(index, "mih" if mih else "flat")
        if not len(hindex):
            warn(f"{index} holds no codes: every search comes back empty (sadh-cli index add / index build fill it)")
        side = Sidecar.of_index(index, hindex.file_digest)
        encoder = index_encoder(index, hindex.bits, side, model)
        files = expand_images(images)
        codes, failures = encoder.encode_files(files)
        bad = report_failures(failures, len(files))
        distances, ids = hindex.search(codes, min(k, max(len(hindex), 1)))  # no more rows than the index can fill
        console = make_console()
        for query, dist, found in zip([f for f in map(str, files) if f not in bad], distances, ids):
            table = new_table(title=shown(f"{query}: {int((found >= 0).sum())} nearest of {len(hindex)}"))
            for column in ("rank", "id", "distance", "label", "path"):
                table.add_column(column, justify="right" if column in ("rank", "id", "distance") else "left")
            for rank, (d, i) in enumerate(zip(dist, found), 1):
                if i < 0:
                    break
                labels = ",".join(side.label_names(i)) if side else ""
                table.add_row(str(rank), str(i), str(d), shown(labels), shown((side.path(i) or "") if side else ""))
            console.print(table)
