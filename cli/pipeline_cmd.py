"""`sadh-cli pipeline`: the main job - train, export FP32 + INT8, index the database, evaluate every precision.

Run folder (default runs/pipeline/): train/ (checkpoints), export/ (ONNX models), index/ (one index per
runtime model, with sidecars), report/ (summary.json, comparison plots, one sub-folder per precision).
Each stage is reused when its output is already there and finished, so an interrupted run resumes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from ..sdk.errors import SadhError
from ..train.backbones import Backbone
from ..train.config import Method, TrainConfig
from .options import (
    BACKBONE_OPTION, EVAL_DATABASE_NAMES, INPUT_SIZE_OPTION, METHOD_OPTION, DataOptions, check_outputs, data_options, make_console,
    next_hint, shown, typed,
)

RUNTIME_PRECISIONS = ("fp32", "int8-cpu", "int8-qdq")  # evaluated, in this order
INDEXED_PRECISIONS = ("fp32", "int8-cpu")  # get a full database index
TRAIN_NAME, EXPORT_NAME, INDEX_NAME, REPORT_NAME = "train", "export", "index", "report"
SUMMARY_NAME = "summary.json"
QUICK_TRAIN = dict(query_per_class=10, train_per_class=40, epochs=1, label_epochs=1, eval_database=400)  # unless given
QUICK_OPTION = {"eval_database": "database"}  # the option that overrides a QUICK_TRAIN setting, where its name differs
QUICK_CALIB_IMAGES = 32


def camera_app_path() -> str:
    """The example camera app of this checkout as an absolute path (runs from any folder), else its path in the repository."""
    example = Path(__file__).resolve().parents[1] / "examples" / "camera_app.py"
    return str(example) if example.is_file() else "examples/camera_app.py"


@dataclass(frozen=True)
class Trained:
    """What the later stages need from training: the run folder, its best checkpoint and that checkpoint's mAP."""

    run_dir: Path
    best: Path
    best_map: float | None


def finished_training(run_dir: Path, cfg) -> Trained | None:
    """The finished run in `run_dir` (its last epoch reached), else None; SadhError if it was started with other settings."""
    from ..train.config import setting_differences
    from ..train.run_folder import RunFolder

    run = RunFolder(run_dir)
    saved = run.saved()
    if saved is None:
        return None
    differences = setting_differences(saved.config.to_dict(), cfg.to_dict())
    if differences:
        raise SadhError(
            f"{run_dir.parent} holds a pipeline run with other settings ({'; '.join(differences)}); "
            f"pass another --out for this run, or delete {run_dir.parent} to start over"
        )
    if run.split_file.is_file():
        run.split(cfg.load()[0])  # SadhError if the data's labels changed since
    return Trained(run_dir, run.best, saved.best_map) if run.finished(saved) else None


def exported_models(export_dir: Path, checkpoint: Path) -> dict[str, Path]:
    """Exported ONNX models newer than `checkpoint`, by the precision recorded in their metadata."""
    from ..sdk.encoder import Encoder

    found = {}
    for path in sorted(export_dir.glob("*.onnx")) if export_dir.is_dir() else []:
        if path.stat().st_mtime >= checkpoint.stat().st_mtime:
            found.setdefault(Encoder(path).precision, path)
    return found


def run_training(cfg, console) -> Trained:
    """Train (resuming an interrupted run), or reuse a finished one."""
    from ..train.run_folder import RunFolder
    from ..train.trainer import train

    run = RunFolder.of(cfg)
    done = finished_training(run.path, cfg)
    if done is not None:
        console.print(shown(f"reusing finished training in {run.path} (best mAP {done.best_map:.4f})"), style="yellow")
        return done
    cfg.resume = run.last.is_file()
    epochs = f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
    console.print("[bold]1/4 training[/]", shown(f"{cfg.backbone}, {cfg.bits} bits, {epochs}" + (" (resuming)" if cfg.resume else "")))
    result = train(cfg)
    return Trained(result.run_dir, result.best, result.best_map)


def run_export(checkpoint: Path, export_dir: Path, calib_images: int | None, console) -> dict[str, Path]:
    """Export FP32 + INT8 models (calibration: the exporter's default count unless given), or reuse a newer export."""
    from ..export.api import export_model
    from ..export.settings import ExportSettings

    models = exported_models(export_dir, checkpoint)
    if all(p in models for p in RUNTIME_PRECISIONS):
        console.print(shown(f"reusing the export in {export_dir}"), style="yellow")
        return models
    console.print("[bold]2/4 exporting[/] ONNX FP32 + INT8 (TensorRT Q/DQ and CPU)")
    calib = {} if calib_images is None else {"calib_images": calib_images}
    export_model(checkpoint, export_dir, ExportSettings(int8=True, **calib), log=lambda line: console.print(shown(f"  {line}")))
    models = exported_models(export_dir, checkpoint)
    missing = [p for p in RUNTIME_PRECISIONS if p not in models]
    if missing:
        raise SadhError(f"the export in {export_dir} did not produce {', '.join(missing)} models")
    return models


def finished_index(path: Path, model: Path, dataset: dict, data: Any, items: Any) -> Any:
    """The index at `path` if an earlier run finished it for these items of `data` (LabeledImages), labelled as they are
    now, with this model file (not older than it); else None. Items the index skipped must still be unreadable."""
    import numpy as np

    from ..sdk.formats.index_sidecar import Sidecar
    from ..sdk.index import HammingIndex

    if not path.is_file() or path.stat().st_mtime < model.stat().st_mtime:
        return None
    try:
        side = Sidecar.of_index(path)
        if side is None:
            return None
        held = set(side.ids)
        ids = [int(i) for i in items]
        same = (side.model == str(model.resolve()) and side.dataset == dataset and side.ids == [i for i in ids if i in held]
                and side.labels == [np.flatnonzero(data.labels[i]).tolist() for i in side.ids]
                and not any(readable(data, i) for i in ids if i not in held))
        return HammingIndex.load(path) if same else None
    except SadhError:  # damaged or stale: build it again
        return None


def readable(data: Any, i: int) -> bool:
    """Whether item i of `data` (LabeledImages) can be read now."""
    try:
        data.image(i)
    except SadhError:
        return False
    return True


def summary_table(rows: list[dict[str, Any]], title: str):
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


def evaluate_models(models: dict[str, Path], cfg, out: Path, full_index: bool, console) -> tuple[list[dict[str, Any]], int, int]:
    """Index the database with the INDEXED_PRECISIONS models, evaluate every model; (rows, queries, database size)."""
    from ..sdk.encoder import Encoder
    from ..sdk.data import database_subset
    from .eval_cmd import evaluate
    from .index_cmd import build_index, dataset_spec
    from .options import DataOptions

    dataset, split = cfg.load()
    eval_db = database_subset(split.database, cfg.eval_database, cfg.seed)  # the subset training's mAP used
    index_items = split.database if full_index else eval_db
    opts = DataOptions(**cfg.dataset_settings())
    rows = []
    for precision in RUNTIME_PRECISIONS:
        encoder = Encoder(models[precision])
        row: dict[str, Any] = {"name": f"ONNX {precision}", "model": str(models[precision]), "size_mb": models[precision].stat().st_size / 1e6}
        db_codes = None
        if precision in INDEXED_PRECISIONS:
            index_path, spec = out / INDEX_NAME / f"{precision}.sidx", dataset_spec(opts, "database")
            hindex = finished_index(index_path, models[precision], spec, dataset, index_items)
            if hindex is not None:
                console.print(shown(f"reusing the index {index_path}"), style="yellow")
                row.update(index=str(index_path), index_ms_per_image=None)
            else:
                console.print(f"[bold]3/4 indexing[/] {len(index_items)} database images with the {precision} model")
                hindex, encoded = build_index(encoder, dataset, index_items, index_path, spec)
                row.update(index=str(index_path), index_ms_per_image=encoded.ms_per_item)
            db_codes = hindex.reconstruct(eval_db)
        console.print(f"[bold]4/4 evaluating[/] {precision}: {len(split.query)} queries x {len(eval_db)} database")
        metrics = evaluate(encoder, dataset, split.query, eval_db, out / REPORT_NAME / precision, None, db_codes)
        row.update({k: metrics[k] for k in ("map", "map_tie_aware", "encode_ms_per_image", "search_us_per_query", "topk")})
        row["topk_source"] = metrics["topk_source"]
        if "graded" in metrics:
            row["ndcg@100"] = metrics["graded"].get("ndcg@100")
        rows.append({**row, "metrics": metrics})
    return rows, len(split.query), len(eval_db)


def write_report(rows: list[dict[str, Any]], report: Path, title: str, extra: dict[str, Any]) -> None:
    """Comparison plots over the ONNX rows (NDCG@K too, for multi-label data) and summary.json (rows without full metrics)."""
    from ..sdk.atomic import atomic_write_text
    from .eval_cmd import NDCG_NAME, PAN_NAME, PR_NAME
    from .plots import plot_ndcg_at_k, plot_pr_curve, plot_precision_at_n

    onnx_rows = [r for r in rows if "metrics" in r]
    pr = {r["name"]: (r["metrics"]["pr_by_radius"]["precision"], r["metrics"]["pr_by_radius"]["recall"]) for r in onnx_rows}
    pan = {r["name"]: (r["metrics"]["precision_at_n"]["n"], r["metrics"]["precision_at_n"]["precision"]) for r in onnx_rows}
    plot_pr_curve(pr, report / PR_NAME, title)
    plot_precision_at_n(pan, report / PAN_NAME, title)
    ndcg = {r["name"]: (r["metrics"]["graded"]["ndcg_at_k"]["k"], r["metrics"]["graded"]["ndcg_at_k"]["ndcg"])
            for r in onnx_rows if "graded" in r["metrics"]}
    if ndcg:
        plot_ndcg_at_k(ndcg, report / NDCG_NAME, title)
    summary = {"title": title, **extra, "rows": [{k: v for k, v in r.items() if k != "metrics"} for r in rows]}
    atomic_write_text(report / SUMMARY_NAME, json.dumps(summary, indent=1))


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
        from .eval_cmd import map_name

        check_outputs({}, opts.inputs(), folders={"--out": out})  # before the slow torch import
        opts.check()
        if opts.split is not None:
            opts.load()  # the one-line warning when the split file was made for data with other labels
        console = make_console()
        t_start = time.perf_counter()
        quick_settings = {k: v for k, v in QUICK_TRAIN.items() if not typed(ctx, QUICK_OPTION.get(k, k))} if quick else {}
        settings: dict[str, Any] = {"eval_database": database, **quick_settings}
        settings.update(method=method, backbone=backbone, input_size=input_size, **({} if epochs is None else {"epochs": epochs}))
        given = {k: v for k, v in settings.items() if v is not None}
        cfg = TrainConfig.from_spec(opts, bits=bits, out=str(out), run_name=TRAIN_NAME, **given)
        trained = run_training(cfg, console)
        models = run_export(trained.best, out / EXPORT_NAME, QUICK_CALIB_IMAGES if quick else None, console)
        onnx_rows, n_query, n_db = evaluate_models(models, cfg, out, not quick, console)
        rows = [{"name": "torch (training)", "map": trained.best_map}, *onnx_rows]
        topk = onnx_rows[0]["topk"]
        title = f"{Path(opts.data).name}, {cfg.method}, {cfg.backbone}, {bits} bits, {map_name(topk, n_db)} on {n_query} queries x {n_db} database"
        seconds = time.perf_counter() - t_start
        report = out / REPORT_NAME
        write_report(rows, report, title, {"seconds": seconds, "train_run": str(trained.run_dir)})
        console.print(summary_table(rows, title))
        console.print(shown(f"cut-off {map_name(topk, n_db)}: {onnx_rows[0]['topk_source']}"))
        plots = "pr_curve.png, precision_at_n.png" + (", ndcg_at_k.png" if "ndcg@100" in onnx_rows[0] else "")
        console.print(shown(f"report: {report} (summary.json, {plots}, one folder per precision); {seconds:.0f} s"))
        next_hint("python", camera_app_path(), "0", "--model", models["int8-cpu"], "--index", out / INDEX_NAME / "int8-cpu.sidx")
