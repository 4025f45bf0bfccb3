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
        from ..sdk.indexing import search_files
        from .options import make_console, shown
        from .tables import new_table

        results, side, size = search_files(index, images, model, k, mih)
        console = make_console()
        for found in results:
            table = new_table(title=shown(f"{found.query}: {int((found.ids >= 0).sum())} nearest of {size}"))
            for column in ("rank", "id", "distance", "label", "path"):
                table.add_column(column, justify="right" if column in ("rank", "id", "distance") else "left")
            for rank, (d, i) in enumerate(zip(found.distances, found.ids), 1):
                if i < 0:
                    break
                labels = ",".join(side.label_names(i)) if side else ""
                table.add_row(str(rank), str(i), str(d), shown(labels), shown((side.path(i) or "") if side else ""))
            console.print(table)
