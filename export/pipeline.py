"""The main job as one call, `run_pipeline`: train, export FP32 + INT8, index the database, evaluate every precision.

Run folder: train/ (a RunFolder), export/ (ONNX models), index/ (one index per INDEXED_PRECISIONS model, with its
sidecar), report/ (summary.json, comparison plots, one sub-folder per precision as `sadh.sdk.evaluation` writes it).
Each stage is reused when its output is already there and finished, so an interrupted run resumes.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..sdk.data import DatasetSpec, database_subset
from ..sdk.encoding import Progress, no_progress
from ..sdk.errors import SadhError
from ..sdk.evaluation import NDCG_NAME, PAN_NAME, PR_NAME, evaluate_model, map_name
from ..sdk.indexing import build_index, dataset_record, finished_index
from ..train.config import TrainConfig
from ..train.run_folder import RunFolder

RUNTIME_PRECISIONS = ("fp32", "int8-cpu", "int8-qdq")  # evaluated, in this order
INDEXED_PRECISIONS = ("fp32", "int8-cpu")  # get a full database index
TRAIN_NAME, EXPORT_NAME, INDEX_NAME, REPORT_NAME = "train", "export", "index", "report"
SUMMARY_NAME = "summary.json"
QUICK_TRAIN = dict(query_per_class=10, train_per_class=40, epochs=1, label_epochs=1, eval_database=400)  # unless given
QUICK_CALIB_IMAGES = 32

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """A line of a pipeline's progress: a stage starting (`stage`: "1/4 training" ..., `text`: what it does), a finished
    output reused (`reused`), or else a detail of the running stage (an export log line)."""

    text: str
    stage: Optional[str] = None
    reused: bool = False


def log_step(step: Step) -> None:
    """The default `on_step` of `run_pipeline`: each step as an INFO line of this module's logger."""
    log.info(" ".join(part for part in (step.stage, step.text) if part))


def export_log(on_step: Callable[[Step], None]) -> Callable[[str], None]:
    """The `log` of the pipeline's export: a warning line (`WARNING_PREFIX ...`) becomes a WARNING of this module's
    logger (what a library user sees; sadh-cli prints it once, as `warning: ...`), any other line a Step to `on_step`."""
    from .api import WARNING_PREFIX

    def line(text: str) -> None:
        if text.startswith(WARNING_PREFIX):
            log.warning(text[len(WARNING_PREFIX):])
        else:
            on_step(Step(text))

    return line


@dataclass(frozen=True)
class Trained:
    """What the later stages need from training: the run folder, its best checkpoint and that checkpoint's mAP."""

    run_dir: Path
    best: Path
    best_map: float | None


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline run made: the summary rows as summary.json holds them (torch's training mAP, then one per
    RUNTIME_PRECISIONS model with its metrics), the report's title, the report folder, the models and indexes by
    precision, the training run, and the seconds it took."""

    rows: list[dict[str, Any]]
    title: str
    report: Path
    models: dict[str, Path]
    indexes: dict[str, Path]
    trained: Trained
    seconds: float


def pipeline_config(spec: DatasetSpec, out: Path, quick: bool = False, **settings: Any) -> TrainConfig:
    """The training settings of a pipeline run in `out`: `spec`'s data, then with `quick` the QUICK_TRAIN settings (a
    tiny split, one epoch), then `settings` (TrainConfig fields; they win over both)."""
    return TrainConfig.from_spec(spec, out=str(out), run_name=TRAIN_NAME, **{**(QUICK_TRAIN if quick else {}), **settings})


def finished_training(run_dir: Path, cfg: TrainConfig) -> Trained | None:
    """The finished run in `run_dir` (its last epoch reached), else None; SadhError if it was started with other settings."""
    from ..train.config import setting_differences

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


def run_training(cfg: TrainConfig, on_step: Callable[[Step], None] = log_step) -> Trained:
    """Train (resuming an interrupted run), or reuse a finished one."""
    from ..train.trainer import train

    run = RunFolder.of(cfg)
    done = finished_training(run.path, cfg)
    if done is not None:
        on_step(Step(f"reusing finished training in {run.path} (best mAP {done.best_map:.4f})", reused=True))
        return done
    cfg.resume = run.last.is_file()
    epochs = f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
    on_step(Step(f"{cfg.backbone}, {cfg.bits} bits, {epochs}" + (" (resuming)" if cfg.resume else ""), "1/4 training"))
    result = train(cfg)
    return Trained(result.run_dir, result.best, result.best_map)


def run_export(checkpoint: Path, export_dir: Path, calib_images: int | None, on_step: Callable[[Step], None] = log_step) -> dict[str, Path]:
    """Export FP32 + INT8 models (calibration: the exporter's default count unless given), or reuse a newer export."""
    from .api import export_model
    from .settings import ExportSettings

    models = exported_models(export_dir, checkpoint)
    if all(p in models for p in RUNTIME_PRECISIONS):
        on_step(Step(f"reusing the export in {export_dir}", reused=True))
        return models
    on_step(Step("ONNX FP32 + INT8 (TensorRT Q/DQ and CPU)", "2/4 exporting"))
    calib = {} if calib_images is None else {"calib_images": calib_images}
    export_model(checkpoint, export_dir, ExportSettings(int8=True, **calib), log=export_log(on_step))
    models = exported_models(export_dir, checkpoint)
    missing = [p for p in RUNTIME_PRECISIONS if p not in models]
    if missing:
        raise SadhError(f"the export in {export_dir} did not produce {', '.join(missing)} models")
    return models


def evaluate_models(
    models: dict[str, Path], cfg: TrainConfig, out: Path, full_index: bool, on_step: Callable[[Step], None] = log_step,
    progress: Progress = no_progress,
) -> tuple[list[dict[str, Any]], int, int]:
    """Index the database with the INDEXED_PRECISIONS models (all of it with `full_index`, else the evaluation subset),
    evaluate every model; (rows, queries, database size)."""
    from ..sdk.encoder import Encoder

    dataset, split = cfg.load()
    eval_db = database_subset(split.database, cfg.eval_database, cfg.seed)  # the subset training's mAP used
    index_items = split.database if full_index else eval_db
    rows = []
    for precision in RUNTIME_PRECISIONS:
        encoder = Encoder(models[precision])
        row: dict[str, Any] = {"name": f"ONNX {precision}", "model": str(models[precision]), "size_mb": models[precision].stat().st_size / 1e6}
        db_codes = None
        if precision in INDEXED_PRECISIONS:
            index_path, spec = out / INDEX_NAME / f"{precision}.sidx", dataset_record(DatasetSpec(**cfg.dataset_settings()), "database")
            hindex = finished_index(index_path, models[precision], spec, dataset, index_items)
            if hindex is not None:
                on_step(Step(f"reusing the index {index_path}", reused=True))
                row.update(index=str(index_path), index_ms_per_image=None)
            else:
                on_step(Step(f"{len(index_items)} database images with the {precision} model", "3/4 indexing"))
                hindex, encoded = build_index(encoder, dataset, index_items, index_path, spec, progress)
                row.update(index=str(index_path), index_ms_per_image=encoded.ms_per_item)
            db_codes = hindex.reconstruct(eval_db)
        on_step(Step(f"{precision}: {len(split.query)} queries x {len(eval_db)} database", "4/4 evaluating"))
        metrics = evaluate_model(encoder, dataset, split.query, eval_db, out / REPORT_NAME / precision, None, db_codes, progress)
        row.update({k: metrics[k] for k in ("map", "map_tie_aware", "encode_ms_per_image", "search_us_per_query", "topk")})
        row["topk_source"] = metrics["topk_source"]
        if "graded" in metrics:
            row["ndcg@100"] = metrics["graded"].get("ndcg@100")
        rows.append({**row, "metrics": metrics})
    return rows, len(split.query), len(eval_db)


def write_report(rows: list[dict[str, Any]], report: Path, title: str, extra: dict[str, Any]) -> None:
    """Comparison plots over the ONNX rows (NDCG@K too, for multi-label data) and summary.json (rows without full metrics)."""
    from ..sdk.atomic import atomic_write_text
    from ..sdk.plots import plot_ndcg_at_k, plot_pr_curve, plot_precision_at_n

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


def run_pipeline(
    spec: DatasetSpec,
    out: Path | str,
    quick: bool = False,
    *,
    on_step: Callable[[Step], None] = log_step,
    progress: Progress = no_progress,
    **settings: Any,
) -> PipelineResult:
    """Train on `spec`'s data -> export FP32 + INT8 -> index the database -> evaluate every precision, in the run folder
    `out`, reusing each stage an earlier run finished there (SadhError if it ran with other settings).

    `quick`: a tiny split and one epoch (QUICK_TRAIN, fewer calibration images, only the evaluated database subset
    indexed) that checks the whole chain in about a minute; `settings`: TrainConfig fields (bits, method, backbone,
    epochs, eval_database, ...), winning over `quick`'s. Each stage's lines go to `on_step`, encoding progress to
    `progress`; warnings are logged at WARNING level (the "sadh" logger)."""
    out = Path(out)
    t_start = time.perf_counter()
    cfg = pipeline_config(spec, out, quick, **settings)
    trained = run_training(cfg, on_step)
    models = run_export(trained.best, out / EXPORT_NAME, QUICK_CALIB_IMAGES if quick else None, on_step)
    onnx_rows, n_query, n_db = evaluate_models(models, cfg, out, not quick, on_step, progress)
    rows = [{"name": "torch (training)", "map": trained.best_map}, *onnx_rows]
    cut = map_name(onnx_rows[0]["topk"], n_db)
    title = f"{Path(cfg.data).name}, {cfg.method}, {cfg.backbone}, {cfg.bits} bits, {cut} on {n_query} queries x {n_db} database"
    seconds = time.perf_counter() - t_start
    report = out / REPORT_NAME
    write_report(rows, report, title, {"seconds": seconds, "train_run": str(trained.run_dir)})
    indexes = {p: out / INDEX_NAME / f"{p}.sidx" for p in INDEXED_PRECISIONS}
    return PipelineResult(rows, title, report, models, indexes, trained, seconds)

