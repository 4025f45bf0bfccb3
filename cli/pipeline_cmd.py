"""`sadh-cli pipeline`: the main job - train, export FP32 + INT8, index the database, evaluate every precision
(`sadh.export.pipeline.run_pipeline`), then a summary table."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from ..train.backbones import Backbone
from ..train.config import Method, TrainConfig
from .options import (
    BACKBONE_OPTION, EVAL_DATABASE_NAMES, INPUT_SIZE_OPTION, METHOD_OPTION, DataOptions, check_outputs, data_options, make_console,
    next_hint, progress_bar, shown, typed,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ..export.pipeline import Step
    from rich.table import Table

QUICK_OPTION = {"eval_database": "database"}  # the option that overrides a QUICK_TRAIN setting, where its name differs


def camera_app_path() -> str:
    """The example camera app of this checkout as an absolute path (runs from any folder), else its path in the repository."""
    example = Path(__file__).resolve().parents[1] / "examples" / "camera_app.py"
    return str(example) if example.is_file() else "examples/camera_app.py"


def summary_table(rows: list[dict[str, Any]], title: str) -> Table:
    """A rich table: one row per precision (with NDCG@100 for multi-label data)."""
    from .tables import new_table

    table = new_table(title=shown(title))
    graded = {"NDCG@100": ("ndcg@100", ".4f")} if any(r.get("ndcg@100") is not None for r in rows) else {}  # multi-label data
    columns = {"mAP": ("map", ".4f"), "tie-aware mAP": ("map_tie_aware", ".4f"), **graded, "encode ms/image": ("encode_ms_per_image", ".3f"),
               "search us/query": ("search_us_per_query", ".1f"), "size MB": ("size_mb", ".2f")}
    table.add_column("model", justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(shown(r["name"]), *("-" if r.get(key) is None else format(r[key], spec) for key, spec in columns.values()))
    return table


def step_printer(console: Console) -> Callable[[Step], None]:
    """Print a pipeline step: a stage in bold, a reused output in yellow, a detail indented."""

    def show(step: Step) -> None:
        if step.stage:
            console.print(f"[bold]{step.stage}[/]", shown(step.text))
        elif step.reused:
            console.print(shown(step.text), style="yellow")
        else:
            console.print(shown(f"  {step.text}"))

    return show


def register(app: typer.Typer) -> None:
    """Add the `pipeline` command to the app."""

    @app.command("pipeline")
    @data_options
    def pipeline(
        ctx: typer.Context,
        opts: DataOptions,
        out: Path = typer.Option(Path("runs/pipeline"), "--out", "-o", help="Run folder (reused stages are picked up from here)."),
        method: Method = METHOD_OPTION,
        backbone: Backbone = BACKBONE_OPTION,
        input_size: Optional[int] = INPUT_SIZE_OPTION,
        epochs: Optional[int] = typer.Option(TrainConfig.epochs, min=1, help="Training epochs (default: the training recipe's)."),
        bits: int = typer.Option(TrainConfig.bits, help="Code length (multiple of 8)."),
        database: Optional[int] = typer.Option(
            TrainConfig.eval_database, *EVAL_DATABASE_NAMES, min=1,
            help="Evaluate against a seeded subset of this many database items (training's mAP uses the same).",
        ),
        quick: bool = typer.Option(
            False, "--quick", help="Tiny split (10 queries + 40 training per class, 400 database items; sizes given still apply) and "
            "one epoch: checks the whole chain in about a minute.",
        ),
    ) -> None:
        """Train -> export FP32 + INT8 -> index the database -> evaluate every precision; print a summary table."""
        from ..export.pipeline import QUICK_TRAIN, run_pipeline
        from ..sdk.evaluation import map_name

        check_outputs({}, opts.inputs(), folders={"--out": out})  # before the slow torch import
        opts.check()
        if opts.split is not None:
            opts.load()  # the one-line warning when the split file was made for data with other labels
        settings = dict(bits=bits, eval_database=database, method=method, backbone=backbone, input_size=input_size, epochs=epochs)
        given = {k: v for k, v in settings.items() if v is not None}
        if quick:  # --quick's settings, except those typed
            given = {k: v for k, v in given.items() if k not in QUICK_TRAIN or typed(ctx, QUICK_OPTION.get(k, k))}
            given.update({k: getattr(opts, k) for k in QUICK_TRAIN if hasattr(opts, k) and typed(ctx, k)})
        console = make_console()
        result = run_pipeline(opts, out, quick, on_step=step_printer(console), progress=progress_bar, **given)
        first = result.rows[1]
        cut = map_name(first["topk"], first["metrics"]["database"])
        console.print(summary_table(result.rows, result.title))
        console.print(shown(f"cut-off {cut}: {first['topk_source']}"))
        plots = "pr_curve.png, precision_at_n.png" + (", ndcg_at_k.png" if "ndcg@100" in first else "")
        console.print(shown(f"report: {result.report} (summary.json, {plots}, one folder per precision); {result.seconds:.0f} s"))
        next_hint("python", camera_app_path(), "0", "--model", result.models["int8-cpu"], "--index", result.indexes["int8-cpu"])
