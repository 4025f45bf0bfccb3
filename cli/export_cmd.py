"""`sadh-cli export`: checkpoint -> ONNX FP32 [+ FP16, INT8 (TensorRT Q/DQ + CPU), TensorRT engines], parity-checked."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..export.settings import BatchProfile, Calibration, ExportSettings, QdqTool
from .options import EVAL_DATABASE_NAMES, DataOptions, make_console, next_hint, shown

if TYPE_CHECKING:
    from rich.table import Table

    from ..export.api import ExportResult
    from ..export.report import ReportRow


def register(app: typer.Typer) -> None:
    """Add the `export` command to the app."""

    @app.command("export")
    def export_command(
        checkpoint: Path = typer.Argument(..., help="Checkpoint written by `sadh-cli train` (e.g. runs/NAME/best.pt)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: the checkpoint's folder)."),
        fp16: bool = typer.Option(
            ExportSettings.fp16, "--fp16", help="Also write an FP16 ONNX model (float32 inputs/outputs) for GPUs."
        ),
        int8: bool = typer.Option(
            ExportSettings.int8, "--int8", help="Also write INT8 models: .int8-qdq.onnx (TensorRT) and .int8-cpu.onnx."
        ),
        engine: bool = typer.Option(ExportSettings.engine, "--engine", help="Build TensorRT engines (or print the trtexec commands)."),
        calib_images: int = typer.Option(ExportSettings.calib_images, min=1, help="Training images used to calibrate INT8."),
        calib_method: Calibration = typer.Option(ExportSettings.calib_method, help="How INT8 calibration picks the ranges."),
        qdq_tool: QdqTool = typer.Option(ExportSettings.qdq_tool, help="Writer of the TensorRT Q/DQ model (modelopt: if installed)."),
        batch_min: int = typer.Option(BatchProfile.min, min=1, help="Smallest batch of the engine's optimisation profile."),
        batch_opt: int = typer.Option(BatchProfile.opt, min=1, help="Batch the engine is tuned for."),
        batch_max: int = typer.Option(BatchProfile.max, min=1, help="Largest batch of the engine's optimisation profile."),
        parity_threshold: float = typer.Option(
            ExportSettings.parity_threshold, min=0, max=1, help="Least fraction of identical sign bits, FP32."
        ),
        fp16_threshold: float = typer.Option(ExportSettings.fp16_threshold, min=0, max=1, help="Least fraction of identical sign bits, FP16."),
        int8_threshold: float = typer.Option(ExportSettings.int8_threshold, min=0, max=1, help="Least fraction of identical sign bits, INT8."),
        image_root: Optional[Path] = typer.Option(
            None, help="Where the training list files' images are now, if they moved since training (default: as trained)."
        ),
        run_eval: bool = typer.Option(False, "--eval", help="Then report mAP and CPU speed of every exported model."),
        eval_queries: int = typer.Option(500, min=1, help="--eval: queries (evenly spread over the query split)."),
        eval_database: int = typer.Option(2000, *EVAL_DATABASE_NAMES, min=1, help="--eval: database items (a subsample, for speed)."),
    ) -> None:
        """Export a checkpoint; prints each file with its precision, size, time and parity against torch."""
        from ..export.api import export_model
        from ..sdk.formats.model import PRECISIONS
        from ..export.report import report_export
        from ..export.parity import checkpoint_data_config, checkpoint_dataset

        console = make_console()
        out_dir = out if out is not None else checkpoint.parent
        data = checkpoint_dataset(checkpoint, image_root) if image_root is not None else None
        settings = ExportSettings(
            fp16=fp16, int8=int8, engine=engine, calib_images=calib_images, calib_method=calib_method, qdq_tool=qdq_tool,
            parity_threshold=parity_threshold, fp16_threshold=fp16_threshold, int8_threshold=int8_threshold,
            batch=BatchProfile(batch_min, batch_opt, batch_max),
        )
        result = export_model(
            checkpoint, out_dir, settings, data=data,
            log=lambda line: console.print(shown(line), style="dim", highlight=False),
        )
        console.print(artifact_table(result))
        if result.trtexec:
            console.print("TensorRT is not installed here; build the engine(s) on the target GPU with:")
            for command in result.trtexec:
                console.print(f"  {command}", soft_wrap=True, highlight=False)
        models = {a.precision: a.path for a in result.artifacts if a.precision in PRECISIONS}
        if run_eval:
            console.print(report_table(report_export(checkpoint, models, data, queries=eval_queries, database=eval_database)))
        runtime = models.get("int8-cpu", models["fp32"])
        trained = DataOptions(**{**checkpoint_data_config(checkpoint).dataset_settings(), "split": None})  # its split is beside it
        trained = trained if image_root is None else dataclasses.replace(trained, image_root=image_root)
        next_hint("sadh-cli", "index", "build", "--model", runtime, *trained.args(), "--out", "index.sidx")


def artifact_table(result: ExportResult) -> Table:
    """A rich table of the files an export wrote."""
    from .tables import new_table

    folder = result.artifacts[0].path.parent if result.artifacts else ""
    table = new_table(title=shown(f"export to {folder}: {result.info.backbone}, {result.info.bits} bits"))
    for column in ("file", "precision", "size", "time", "parity vs torch"):
        table.add_column(column, justify="right" if column in ("size", "time") else "left")
    for a in result.artifacts:
        parity = "" if a.parity is None else f"{a.parity.bit_agreement:.2%} bits, max |d| {a.parity.max_abs_diff:.1e}"
        table.add_row(shown(a.path.name), a.precision, f"{a.size_bytes / 1e6:.2f} MB", f"{a.seconds:.1f} s", parity)
    return table


def report_table(rows: list[ReportRow]) -> Table:
    """A rich table of the accuracy and speed report."""
    from .tables import new_table

    table = new_table(title="accuracy (mAP@all) and onnxruntime CPU speed")
    for column in ("model", "precision", "mAP", "batch 1 ms", "batch 1 img/s", "batch 32 img/s"):
        table.add_column(column, justify="left" if column in ("model", "precision") else "right")

    def fmt(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    for r in rows:
        table.add_row(shown(r.model), r.precision, f"{r.map:.4f}", fmt(r.batch1_ms, ".1f"), fmt(r.batch1_ips, ".0f"), fmt(r.batch32_ips, ".0f"))
    return table
