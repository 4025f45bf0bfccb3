"""`sadh-cli data`: inspect datasets, write splits and preview the mosaic benchmark."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import DataOptions, check_outputs, check_outputs_spare_images, data_options, make_console, say, shown


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the app."""
    group = typer.Typer(help="Inspect datasets, write splits, preview mosaics.", no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(group, name="data")

    @group.command("info")
    @data_options
    def info(
        opts: DataOptions, out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also save the split (.npz) here.")
    ) -> None:
        """Print a dataset's size, classes and split; optionally save the split."""
        from .tables import new_table

        if out is not None:
            check_outputs({"--out": out}, opts.inputs())
        data, split = opts.load()
        if out is not None:
            check_outputs_spare_images({"--out": out}, data)
        table = new_table(title=shown(f"{data.name}: {len(data)} images, {data.num_classes} classes"))
        table.add_column("role")
        table.add_column("items", justify="right")
        table.add_column("labels/item", justify="right")
        for role in ("query", "train", "database"):
            idx = getattr(split, role)
            table.add_row(role, str(len(idx)), f"{data.labels[idx].sum(1).mean():.2f}")
        console = make_console()
        console.print(table)
        console.print(shown("classes: " + ", ".join(data.class_names)))
        if out is not None:
            split.made_for(data.labels).save(out)  # records its data: a later --split on other data is named
            console.print(shown(f"split written to {out}"))

    @group.command("preview")
    @data_options
    def preview(
        opts: DataOptions,
        out: Path = typer.Option(Path("preview.png"), "--out", "-o", help="Where to write the grid image."),
        count: int = typer.Option(16, min=1, max=256, help="How many training images to show."),
    ) -> None:
        """Write a grid image of training items, each above its label names (wrapped, never cut)."""
        from ..sdk.atomic import atomic_write_bytes
        from ..sdk.grid import encode_png, preview_grid

        check_outputs({"--out": out}, opts.inputs())
        data, split = opts.load()
        check_outputs_spare_images({"--out": out}, data)
        idx = split.train[:count]
        atomic_write_bytes(out, encode_png(preview_grid(data, idx)))
        say(f"wrote {out} ({len(idx)} images)")
