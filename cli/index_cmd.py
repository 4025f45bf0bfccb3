"""`sadh-cli index build|add|remove|info`: a Hamming index file plus its JSON sidecar, built from a dataset split and
kept up to date with new image files (a camera enrolling items) or removed ids."""
from __future__ import annotations

import dataclasses
import filecmp
import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from ..sdk.atomic import interrupts_deferred
from ..sdk.locking import writer_lock
from ..sdk.errors import SadhError
from .chunks import Encoded, partial_path
from .options import (
    BATCH_OPTION, MODEL_OPTION, DataOptions, check_outputs, check_outputs_spare_images, data_options, load_for_model, make_console,
    model_split_path, next_hint, say, shown, warn, written_before_interrupt,
)

ROLES = ("database", "query", "train", "all")


def check_role(role: str) -> None:
    """SadhError unless `role` is one of ROLES."""
    if role not in ROLES:
        raise SadhError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def role_indices(split, n_items: int, role: str) -> np.ndarray:
    """Dataset indices of a split role ("all": every item)."""
    check_role(role)
    return np.arange(n_items, dtype=np.int64) if role == "all" else getattr(split, role)


def dataset_spec(opts: DataOptions, role: str) -> dict:
    """The dataset options (JSON-able) plus the role, so a sidecar can name its items without paths."""
    return {**opts.record(), "role": role}


def index_encoder(index: Path, bits: int, side, model: Optional[Path], batch: int = 64):
    """The encoder that searches or adds to `index`: `model`, else the one its sidecar names; SadhError if its bits, or
    the trained weights both record, differ."""
    from .encode_cmd import open_encoder

    if model is None:
        if side is None or not side.model:
            raise SadhError(f"{index}: no sidecar names the model; pass --model")
        model = Path(side.model)
        if not model.is_file():
            raise SadhError(f"{index}: the model its sidecar names, {model}, is not there (moved?); pass --model")
    encoder = open_encoder(model, batch)
    if encoder.bits != bits:
        raise SadhError(f"{index} holds {bits}-bit codes but {model} makes {encoder.bits}-bit codes")
    if side is not None and side.weights and encoder.weights and side.weights != encoder.weights:
        raise SadhError(
            f"{model} holds other trained weights than the model that built {index}, so their codes do not compare; "
            "use that model (any precision of its export) or rebuild the index"
        )
    return encoder


def save_index(hindex, side, index: Path) -> None:
    """Write the index and its sidecar as one step (`sadh.sdk.formats.index_sidecar.save_with_sidecar`); a Ctrl-C meanwhile takes
    effect after it."""
    from ..sdk.formats.index_sidecar import save_with_sidecar

    with interrupts_deferred():
        save_with_sidecar(hindex, side, index)


def build_index(encoder, data, index: np.ndarray, out: Path, dataset: dict | None) -> tuple[object, Encoded]:
    """Encode items `index` of `data` (resumable: OUT.partial), write the index (ids = dataset indices) and its sidecar;
    return (index, what was encoded)."""
    from ..sdk.formats.index_sidecar import Sidecar
    from ..sdk.index import HammingIndex
    from .encode_cmd import encode_items

    encoded = encode_items(encoder, data, index, partial=partial_path(out))
    codes, ids = encoded.codes, encoded.ids
    hindex = HammingIndex(encoder.bits)
    hindex.add(codes, ids)
    side = Sidecar(
        ids=ids.tolist(),
        labels=[np.flatnonzero(data.labels[i]).tolist() for i in ids],
        class_names=list(data.class_names),
        paths=[os.path.abspath(data.paths[i]) for i in ids] if data.paths is not None else None,  # search works from any folder
        dataset=dataset,
        model=str(encoder.path.resolve()),
        weights=encoder.weights,
    )
    with interrupts_deferred():  # a Ctrl-C while writing leaves no partial folder behind a finished index
        save_index(hindex, side, out)
        encoded.discard_partial()
    return hindex, encoded


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
        from ..sdk.formats.records import sidecar_path
        from .encode_cmd import open_encoder

        inputs = [("--model", model), ("the model's training split", model_split_path(model)), *opts.inputs()]
        check_outputs({"--out": out, "its sidecar": sidecar_path(out)}, inputs, folders={"its partial folder": partial_path(out)})
        check_role(role)  # before the data is loaded
        encoder = open_encoder(model, batch)
        data, split, used = load_for_model(opts, encoder)
        check_outputs_spare_images({"--out": out, "its sidecar": sidecar_path(out)}, data)
        index = role_indices(split, len(data), role)
        hindex, encoded = build_index(encoder, data, index, out, dataset_spec(used, role))
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
        from ..sdk.formats.index_file import read_header
        from ..sdk.formats.index_sidecar import Sidecar
        from ..sdk.index import HammingIndex
        from .encode_cmd import expand_images, report_failures

        read_header(index)  # a missing or foreign file is refused before its lock file is made
        with writer_lock(index):  # from reading the index to renaming its new version: no other writer between
            hindex = HammingIndex.load(index)
            side = Sidecar.of_index(index, hindex.file_digest)
            if side is not None and side.paths is None:
                dataset = side.dataset or {}
                raise SadhError(
                    f"{index} indexes items of {dataset.get('data', 'a dataset')} ({dataset.get('role', 'some role')}), not files; "
                    "add files to an index built from image files"
                )
            if label and side is None:
                raise SadhError(f"{index} has no sidecar to record labels in; add without --label")
            new_classes = list(dict.fromkeys(name for name in label if name not in side.class_names)) if side is not None else []
            if any(not name.strip() for name in label):
                raise SadhError("--label takes a class name, got an empty one")
            class_names = side.class_names + new_classes if side is not None else []
            classes = sorted({class_names.index(name) for name in label})
            encoder = index_encoder(index, hindex.bits, side, model, batch)
            built_with = Path(side.model) if side is not None and side.model else None
            unknown_weights = side is None or not side.weights or not encoder.weights  # else index_encoder compared them
            if (unknown_weights and model is not None and built_with is not None and built_with.is_file()
                    and not filecmp.cmp(model, built_with, shallow=False)):
                warn(f"{model} is not the model file that built {index} ({built_with}): its codes must come from the same network")
            files = expand_images(images)
            known = set(side.paths) if side is not None else set()
            fresh = [f for f in dict.fromkeys(os.path.abspath(f) for f in files) if f not in known]  # each file once
            if not fresh:
                raise SadhError(f"nothing to add: every file given is already in {index}")
            if len(fresh) < len(files):
                warn(f"skipped {len(files) - len(fresh)} files already in {index} or given twice")
            files = [Path(f) for f in fresh]
            codes, failures = encoder.encode_files(files)
            bad = report_failures(failures, len(files))
            added = [f for f in map(str, files) if f not in bad]
            ids = hindex.add(codes)
            if side is not None:
                side = dataclasses.replace(
                    side, ids=side.ids + ids.tolist(), labels=side.labels + [classes] * len(ids), paths=side.paths + added,
                    class_names=class_names, index_digest=None,
                )
            with written_before_interrupt(f"{index} and its sidecar were written with the {len(ids)} images added"):
                save_index(hindex, side, index)
                say(f"added {len(ids)} images to {index} as ids {ids[0]}..{ids[-1]}; it holds {len(hindex)} codes")
                if new_classes:
                    known = ", ".join(side.class_names[: -len(new_classes)])
                    say(f"new classes in {index}: {', '.join(new_classes)} (known before: {known})")

    @group.command("remove")
    def remove(
        ids: List[int] = typer.Argument(..., help="Ids to remove, as `sadh-cli search` prints them."),
        index: Path = typer.Option(..., "--index", "-i", help="Index file to remove from (rewritten with its sidecar)."),
    ) -> None:
        """Remove ids from an index and its sidecar (an id that is not in the index refuses the whole removal)."""
        from ..sdk.formats.index_file import read_header
        from ..sdk.formats.index_sidecar import Sidecar
        from ..sdk.index import HammingIndex

        wide = next((i for i in ids if not -(2**63) <= i < 2**63), None)
        if wide is not None:
            raise SadhError(f"id {wide} is not in the index (ids are 64-bit integers); nothing was removed")
        read_header(index)  # a missing or foreign file is refused before its lock file is made
        with writer_lock(index):  # from reading the index to renaming its new version: no other writer between
            hindex = HammingIndex.load(index)
            side = Sidecar.of_index(index, hindex.file_digest)
            removed = hindex.remove(np.array(ids, np.int64))
            if side is not None:
                gone = set(ids)
                keep = [r for r, i in enumerate(side.ids) if i not in gone]
                side = dataclasses.replace(
                    side, ids=[side.ids[r] for r in keep], labels=[side.labels[r] for r in keep],
                    paths=None if side.paths is None else [side.paths[r] for r in keep], index_digest=None,
                )
            with written_before_interrupt(f"{index} and its sidecar were written with {removed} ids removed"):
                save_index(hindex, side, index)
                say(f"removed {removed} ids from {index}; it holds {len(hindex)} codes")

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
