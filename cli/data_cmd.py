"""`sadh-cli data`: inspect datasets, write splits and preview the mosaic benchmark."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import typer

from .options import DataOptions, check_outputs, check_outputs_spare_images, data_options, make_console

TILE = 96  # preview tile size in pixels; the label names go in a band below the tiles
FONT, FONT_SCALE, LINE_HEIGHT = cv2.FONT_HERSHEY_PLAIN, 0.7, 12  # caption font, its scale, and pixels per line


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
        from rich.table import Table

        if out is not None:
            check_outputs({"--out": out}, opts.inputs())
        data, split = opts.load()
        if out is not None:
            check_outputs_spare_images({"--out": out}, data)
        table = Table(title=f"{data.name}: {len(data)} images, {data.num_classes} classes")
        table.add_column("role")
        table.add_column("items", justify="right")
        table.add_column("labels/item", justify="right")
        for role in ("query", "train", "database"):
            idx = getattr(split, role)
            table.add_row(role, str(len(idx)), f"{data.labels[idx].sum(1).mean():.2f}")
        console = make_console()
        console.print(table)
        console.print("classes: " + ", ".join(data.class_names))
        if out is not None:
            split.made_for(data.labels).save(out)  # records its data: a later --split on other data is named
            console.print(f"split written to {out}")

    @group.command("preview")
    @data_options
    def preview(
        opts: DataOptions,
        out: Path = typer.Option(Path("preview.png"), "--out", "-o", help="Where to write the grid image."),
        count: int = typer.Option(16, min=1, max=256, help="How many training images to show."),
    ) -> None:
        """Write a grid image of training items, each above its label names (wrapped, never cut)."""
        import numpy as np

        from ..sdk.atomic import atomic_write_bytes
        from ..sdk.preprocess import fit_square

        check_outputs({"--out": out}, opts.inputs())
        data, split = opts.load()
        check_outputs_spare_images({"--out": out}, data)
        idx = split.train[:count]
        captions = [wrap_caption(", ".join(data.class_names[c] for c in np.flatnonzero(data.labels[i])), TILE - 4) for i in idx]
        band = max(len(lines) for lines in captions) * LINE_HEIGHT + 4
        tiles = []
        for i, lines in zip(idx, captions):
            tile = np.zeros((TILE + band, TILE, 3), np.uint8)
            tile[:TILE] = cv2.cvtColor(fit_square(data.image(i), TILE), cv2.COLOR_RGB2BGR)
            for row, line in enumerate(lines, 1):
                cv2.putText(tile, line, (2, TILE + row * LINE_HEIGHT), FONT, FONT_SCALE, (0, 255, 255), 1)
            tiles.append(tile)
        cols = int(np.ceil(np.sqrt(len(tiles))))
        tiles += [np.zeros_like(tiles[0])] * (cols * cols - len(tiles))
        grid = np.vstack([np.hstack(tiles[r * cols : (r + 1) * cols]) for r in range(cols)])
        ok, png = cv2.imencode(".png", grid)
        atomic_write_bytes(out, png.tobytes())
        typer.echo(f"wrote {out} ({len(idx)} images)")


def text_width(text: str) -> int:
    """Width in pixels of `text` in the preview's caption font."""
    return cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0]


def wrap_caption(text: str, width: int) -> list[str]:
    """`text` as lines of at most `width` pixels: broken at spaces, inside a word only where it alone is too wide."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and text_width(f"{line} {word}") <= width:
            line = f"{line} {word}"
            continue
        if line:
            lines.append(line)
            line = ""
        for char in word:
            if line and text_width(line + char) > width:
                lines.append(line)
                line = ""
            line += char
    return lines + [line]
