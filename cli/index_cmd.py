"""`sadh-cli index build|info`: encode a dataset split into a Hamming index file plus its JSON sidecar."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import typer

from ..sdk.errors import SadhError
from .chunks import Encoded, partial_path
from .options import (
    BATCH_OPTION, MODEL_OPTION, DataOptions, check_outputs, data_options, load_for_model, make_console, model_split_path, next_hint,
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
    spec = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()}
    return {**spec, "role": role}


def build_index(encoder, data, index: np.ndarray, out: Path, dataset: dict | None) -> tuple[object, Encoded]:
    """Encode items `index` of `data` (resumable: OUT.partial), write the index (ids = dataset indices) and its sidecar;
    return (index, what was encoded)."""
    from ..sdk.index import HammingIndex
    from ..sdk.retriever import Sidecar, sidecar_path
    from .encode_cmd import encode_items

    encoded = encode_items(encoder, data, index, partial=partial_path(out))
    codes, ids = encoded.codes, encoded.ids
    hindex = HammingIndex(encoder.bits)
    hindex.add(codes, ids)
    hindex.save(out)
    Sidecar(
        ids=ids.tolist(),
        labels=[np.flatnonzero(data.labels[i]).tolist() for i in ids],
        class_names=list(data.class_names),
        paths=[os.path.abspath(data.paths[i]) for i in ids] if data.paths is not None else None,  # search works from any folder
        dataset=dataset,
        model=str(encoder.path.resolve()),
    ).save(sidecar_path(out))
    return hindex, encoded


def register(app: typer.Typer) -> None:
    """Add the `index` command group to the app."""
    group = typer.Typer(help="Build and inspect Hamming index files.", no_args_is_help=True)
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
        from ..sdk.retriever import sidecar_path
        from .encode_cmd import open_encoder

        inputs = [("--model", model), ("the model's training split", model_split_path(model)), *opts.inputs()]
        check_outputs({"--out": out, "its sidecar": sidecar_path(out)}, inputs)
        check_role(role)  # before the data is loaded
        encoder = open_encoder(model, batch)
        data, split, used = load_for_model(opts, encoder)
        index = role_indices(split, len(data), role)
        hindex, encoded = build_index(encoder, data, index, out, dataset_spec(used, role))
        speed = "all resumed" if encoded.ms_per_item is None else f"{encoded.ms_per_item:.2f} ms/image"
        typer.echo(
            f"wrote {out}: {len(hindex)} codes of {hindex.bits} bits from {data.name} ({role}), "
            f"{out.stat().st_size / 1e6:.2f} MB, {encoded.seconds:.1f} s ({speed}); sidecar {sidecar_path(out)}"
        )
        next_hint("sadh-cli", "search", "--index", out, "--model", model, "IMAGE_OR_FOLDER", "-k", "10")

    @group.command("info")
    def info(index: Path = typer.Argument(..., help="Index file (.sidx).")) -> None:
        """Print an index file's code length, size and what its sidecar says (the checksum is verified)."""
        from rich.table import Table

        from ..sdk.index import HammingIndex
        from ..sdk.retriever import Sidecar, sidecar_path

        hindex = HammingIndex.load(index, mmap=True, verify=True)
        table = Table(title=str(index), show_header=False)
        table.add_row("codes", str(len(hindex)))
        table.add_row("bits", str(hindex.bits))
        table.add_row("file size", f"{index.stat().st_size / 1e6:.2f} MB")
        if sidecar_path(index).is_file():
            side = Sidecar.load(sidecar_path(index))
            table.add_row("model", side.model or "?")
            table.add_row("classes", ", ".join(side.class_names))
            table.add_row("items", "file paths" if side.paths is not None else f"dataset {side.dataset}")
        else:
            table.add_row("sidecar", "none (ids only)")
        make_console().print(table)
