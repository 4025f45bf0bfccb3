"""`sadh-cli index build|add|remove|info`: a Hamming index file plus its JSON sidecar, built from a dataset split and
kept up to date with new image files (a camera enrolling items) or removed ids (the work: `sadh.sdk.indexing`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..sdk.errors import SadhError
from ..sdk.indexing import ROLES
from .options import (
    BATCH_OPTION, MODEL_OPTION, DataOptions, check_outputs, check_outputs_spare_images, data_for_model, data_options, make_console,
    next_hint, progress_bar, say, shown,
)


def register(app: typer.Typer) -> None:
    """Add the `index` command group to the app."""
    group = typer.Typer(help="Build, update and inspect Hamming index files.", no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(group, name="index")

    @group.command("build")
    @data_options
    def build(
        opts: DataOptions,
        model: Path = MODEL_OPTION,
        out: Path = typer.Option(Path("index.sidx"), "--out", "-o", help="Index file to write (sidecar: OUT.json)."),
        role: str = typer.Option("database", help=f"Which items to index: {' | '.join(ROLES)}."),
        batch: int = BATCH_OPTION,
    ) -> None:
        """Encode a dataset split and write a Hamming index with a sidecar of labels and paths."""
        from ..sdk.encoder import Encoder
        from ..sdk.encoding import partial_path
        from ..sdk.indexing import build_index, check_role, dataset_record, role_indices
        from ..sdk.model_split import model_split_path
        from ..sdk.formats.records import sidecar_path

        inputs = [("--model", model), ("the model's training split", model_split_path(model)), *opts.inputs()]
        check_outputs({"--out": out, "its sidecar": sidecar_path(out)}, inputs, folders={"its partial folder": partial_path(out)})
        check_role(role)  # before the data is loaded
        encoder = Encoder(model, max_batch=batch)
        chosen = data_for_model(opts, encoder)
        data = chosen.data
        check_outputs_spare_images({"--out": out, "its sidecar": sidecar_path(out)}, data)
        items = role_indices(chosen.split, len(data), role)
        hindex, encoded = build_index(encoder, data, items, out, dataset_record(chosen.spec, role), progress_bar)
        speed = "all resumed" if encoded.ms_per_item is None else f"{encoded.ms_per_item:.2f} ms/image"
        say(
            f"wrote {out}: {len(hindex)} codes of {hindex.bits} bits from {data.name} ({role}), "
            f"{out.stat().st_size / 1e6:.2f} MB, {encoded.seconds:.1f} s ({speed}); sidecar {sidecar_path(out)}"
        )
        next_hint("sadh-cli", "search", "--index", out, "--model", model, "IMAGE_OR_FOLDER", "-k", "10")

    @group.command("add")
    def add(
        images: List[Path] = typer.Argument(..., help="Image files and/or folders to add."),
        index: Path = typer.Option(..., "--index", "-i", help="Index file to add to (rewritten with its sidecar)."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Exported model (default: the one the index was built with)."),
        label: List[str] = typer.Option(
            [], "--label", "-l", help="Class name of the added images (a new name adds a class); repeat for several (default: none)."
        ),
        batch: int = BATCH_OPTION,
    ) -> None:
        """Encode image files and add them to an index and its sidecar; their ids follow the largest id."""
        from ..sdk.indexing import add_files

        added = add_files(index, images, model, label, batch)
        say(f"added {len(added.ids)} images to {index} as ids {added.ids[0]}..{added.ids[-1]}; it holds {added.size} codes")
        if added.new_classes:
            say(f"new classes in {index}: {', '.join(added.new_classes)} (known before: {', '.join(added.known_classes)})")

    @group.command("remove")
    def remove(
        ids: List[int] = typer.Argument(..., help="Ids to remove, as `sadh-cli search` prints them."),
        index: Path = typer.Option(..., "--index", "-i", help="Index file to remove from (rewritten with its sidecar)."),
    ) -> None:
        """Remove ids from an index and its sidecar (an id that is not in the index refuses the whole removal)."""
        from ..sdk.indexing import remove_ids

        removed, left = remove_ids(index, ids)
        say(f"removed {removed} ids from {index}; it holds {left} codes")

    @group.command("info")
    def info(
        index: Optional[Path] = typer.Argument(None, help="Index file (.sidx)."),
        index_option: Optional[Path] = typer.Option(None, "--index", "-i", help="The index file, as search and index add take it."),
    ) -> None:
        """Print an index file's code length, size and what its sidecar says (the checksum is verified)."""
        from .tables import new_table

        from ..sdk.formats.index_sidecar import Sidecar
        from ..sdk.index import HammingIndex

        if (index is None) == (index_option is None):
            raise SadhError("give the index file once: `sadh-cli index info FILE` or `sadh-cli index info -i FILE`")
        index = index or index_option
        hindex = HammingIndex.load(index, mmap=True, verify=True)
        table = new_table(title=shown(index), show_header=False)
        table.add_row("codes", str(len(hindex)))
        table.add_row("bits", str(hindex.bits))
        table.add_row("file size", f"{index.stat().st_size / 1e6:.2f} MB")
        side = Sidecar.of_index(index, hindex.file_digest)
        if side is not None:
            table.add_row("model", shown(side.model or "?"))
            table.add_row("classes", shown(", ".join(side.class_names)))
            if side.paths:
                table.add_row("items", shown(f"image files, e.g. {side.paths[0]}"))
            elif side.dataset:
                table.add_row("items", shown(f"the {side.dataset.get('role', '?')} items of {side.dataset.get('data', '?')}"))
        else:
            table.add_row("sidecar", "none (ids only)")
        make_console().print(table)
