"""`sadh-cli data`: inspect datasets, write splits and preview the mosaic benchmark."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import DataOptions, check_outputs, data_options


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the app."""
    group = typer.Typer(help="Inspect datasets, write splits, preview mosaics.", no_args_is_help=True)
    app.add_typer(group, name="data")

    @group.command("info")
    @data_options
    def info(opts: DataOptions, out: Optional[Path] = typer.Option(None, help="Also save the split (.npz) here.")) -> None:
        """Print a dataset's size, classes and split; optionally save the split."""
        from rich.console import Console
        from rich.table import Table

        if out is not None:
            check_outputs({"--out": out}, opts.inputs())
        data, split = opts.load()
        table = Table(title=f"{data.name}: {len(data)} images, {data.num_classes} classes")
        table.add_column("role")
        table.add_column("items", justify="right")
        table.add_column("labels/item", justify="right")
        for role in ("query", "train", "database"):
            idx = getattr(split, role)
            table.add_row(role, str(len(idx)), f"{data.labels[idx].sum(1).mean():.2f}")
        Console().print(table)
        Console().print("classes: " + ", ".join(data.class_names))
        if out is not None:
            split.save(out)
            Console().print(f"split written to {out}")

    @group.command("preview")
    @data_options
    def preview(
        opts: DataOptions,
        out: Path = typer.Option(Path("preview.png"), help="Where to write the grid image."),
        count: int = typer.Option(16, min=1, max=256, help="How many training images to show."),
    ) -> None:
        """Write a grid image of training items with their labels."""
        import cv2
        import numpy as np

        from ..sdk.atomic import atomic_write_bytes
        from ..sdk.preprocess import fit_square

        check_outputs({"--out": out}, opts.inputs())
        data, split = opts.load()
        idx = split.train[:count]
        tiles = [cv2.cvtColor(fit_square(data.image(i), 96), cv2.COLOR_RGB2BGR) for i in idx]
        for tile, i in zip(tiles, idx):
            names = [data.class_names[c][:10] for c in np.flatnonzero(data.labels[i])]
            cv2.putText(tile, ",".join(names)[:18], (2, 10), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 255, 255), 1)
        cols = int(np.ceil(np.sqrt(len(tiles))))
        tiles += [np.zeros_like(tiles[0])] * (cols * cols - len(tiles))
        grid = np.vstack([np.hstack(tiles[r * cols : (r + 1) * cols]) for r in range(cols)])
        ok, png = cv2.imencode(".png", grid)
        atomic_write_bytes(out, png.tobytes())
        typer.echo(f"wrote {out} ({len(idx)} images)")
