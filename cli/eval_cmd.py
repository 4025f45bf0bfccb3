"""`sadh-cli eval`: retrieval quality of an exported model on a dataset split, with plots and a retrieval grid."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..sdk.evaluation import DATABASE_CODES_NAME, GRID_NAME, METRICS_NAME, REPORT_NAMES, map_name, plot_names
from .options import (
    BATCH_OPTION, EVAL_DATABASE_NAMES, MODEL_OPTION, DataOptions, check_outputs, check_outputs_spare_images, data_for_model,
    data_options, next_hint, progress_bar, warn,
)

TIE_GAP = 0.02  # a plain mAP this far from the tie-aware one owes it to the database order


def warn_tie_order(plain: float, tie_aware: float) -> None:
    """Warn when the plain mAP (ties broken by database order) is more than TIE_GAP from the tie-aware one."""
    if abs(plain - tie_aware) > TIE_GAP:
        warn(
            f"ties decide much of this mAP ({plain:.4f}; {tie_aware:.4f} over random orders of tied items): many items share "
            "a code and the database order breaks their ties (a folder dataset is ordered by class); compare by the tie-aware mAP"
        )


def graded_line(scores: dict) -> str:
    """The lead graded metrics (GRADED_REPORT) of a report's graded block, in words."""
    from ..sdk.metrics import GRADED_REPORT

    shown = [f"{m.upper()}@{k} {scores[f'{m}@{k}']:.4f}" for m, k in GRADED_REPORT if f"{m}@{k}" in scores]
    return "graded (relevance = labels shared): " + (", ".join(shown) or "database smaller than every cut-off")


def register(app: typer.Typer) -> None:
    """Add the `eval` command to the app."""

    @app.command("eval")
    @data_options
    def eval_(
        opts: DataOptions,
        model: Path = MODEL_OPTION,
        out: Path = typer.Option(Path("report"), "--out", "-o", help="Report folder (metrics.json and PNGs)."),
        topk: Optional[int] = typer.Option(
            None, min=1, help="mAP@K cut-off (default: all for single-label data; for multi-label data the named protocol's: "
            "1000 for the mosaic sets, 5000 for NUS-WIDE / MS-COCO, all for MIRFlickr / VOC, else 5000).",
        ),
        database: Optional[int] = typer.Option(
            None, *EVAL_DATABASE_NAMES, min=1, help="Evaluate against a seeded random subset of this many database items."
        ),
        batch: int = BATCH_OPTION,
    ) -> None:
        """Score query-vs-database retrieval: mAP@K, tie-aware mAP, precision@N, precision-recall by radius; for multi-label
        data also NDCG, ACG and WAP with relevance = the number of labels shared."""
        from ..sdk.data import database_subset
        from ..sdk.encoder import Encoder
        from ..sdk.encoding import partial_path
        from ..sdk.evaluation import evaluate_model
        from ..sdk.model_split import model_split_path
        from ..sdk.plots import plots_missing

        reports = {f"--out/{name}": out / name for name in REPORT_NAMES}
        inputs = [("--model", model), ("the model's training split", model_split_path(model)), *opts.inputs()]
        check_outputs(reports, inputs, folders={"--out": out, "its partial folder": partial_path(out / DATABASE_CODES_NAME)})
        encoder = Encoder(model, max_batch=batch)
        chosen = data_for_model(opts, encoder)
        check_outputs_spare_images(reports, chosen.data)
        db_idx = database_subset(chosen.split.database, database, opts.split_seed)
        r = evaluate_model(encoder, chosen.data, chosen.split.query, db_idx, out, topk, progress=progress_bar)
        typer.echo(
            f"{map_name(r['topk'], r['database'])} {r['map']:.4f} (tie-aware {r['map_tie_aware']:.4f}) on {r['queries']} queries x "
            f"{r['database']} database, {r['bits']} bits, {r['precision']}; encode {r['encode_ms_per_image']:.2f} ms/image, "
            f"search {r['search_us_per_query']:.0f} us/query"
        )
        typer.echo(f"cut-off {map_name(r['topk'], r['database'])}: {r['topk_source']}")
        if "graded" in r:
            typer.echo(graded_line(r["graded"]))
        warn_tie_order(r["map"], r["map_tie_aware"])
        written = (*(() if plots_missing() else plot_names(r)), GRID_NAME)  # no plots without matplotlib (it warned)
        typer.echo(f"wrote {out / METRICS_NAME}, {', '.join(str(out / name) for name in written)}")
        next_hint("sadh-cli", "index", "build", "--model", model, *opts.args(), "--out", "index.sidx")
