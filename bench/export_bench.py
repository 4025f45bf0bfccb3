"""Export benchmark: mAP and onnxruntime CPU speed of torch FP32 vs ONNX FP32 / FP16 / INT8 (TensorRT Q/DQ and CPU).

For EfficientNet-Lite0 at 224 (a trained 224-px checkpoint when one exists, else the ImageNet-pretrained backbone
with freshly initialised hash heads) and the small CNN (the training bench's checkpoint, else a short training run
here). Protocol: Fashion-MNIST, per class 100 queries / 500 train / rest database; mAP@all with sign codes over an
evenly spread subset of queries and database; speed with 2 onnxruntime threads at batch 1 and 32. Also measures
the candidate INT8 CPU formats (QOperator vs Q/DQ, both U8S8) that picked CPU_FLAVOUR.

    nice python bench/export_bench.py
    nice python bench/export_bench.py --backbones small_cnn --queries 1000 --database 5000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from sadh.export.api import export_model
from sadh.export.int8 import CPU_FLAVOUR, Int8Flavour, QuantFormat, QuantType, preprocess_for_quantization, quantize_int8
from sadh.sdk.formats.model import sadh_version
from sadh.export.parity import checkpoint_dataset, model_inputs, spread
from sadh.export.report import THROUGHPUT_BATCH, images_per_second, report_export
from sadh.export.settings import ExportSettings
from sadh.sdk.atomic import atomic_write_text
from sadh.train.checkpoint import load_model, save_checkpoint
from sadh.train.config import TrainConfig
from sadh.train.model import create_model
from sadh.train.run_folder import RunFolder
from sadh.train.trainer import train

HERE = Path(__file__).resolve().parent
BITS = 32
SIZES = {"efficientnet_lite0": 224, "small_cnn": 28}
CPU_CANDIDATES = {
    "qoperator-u8s8": CPU_FLAVOUR,
    "qdq-u8s8": Int8Flavour("int8-cpu", QuantFormat.QDQ, QuantType.QUInt8, activation_symmetric=False),
}
TARGETS = {"int8_map_drop_max": 0.01, "cpu_int8_speedup_batch32_min": 2.0, "cpu_int8_speedup_batch1_min": 1.5}


def pretrained_checkpoint(backbone: str, path: Path) -> Path:
    """A checkpoint of the ImageNet-pretrained backbone with freshly initialised (seeded) hash heads."""
    torch.manual_seed(0)
    model = create_model(backbone, BITS, 10, pretrained=True)
    cfg = TrainConfig(backbone=backbone, bits=BITS, input_size=SIZES[backbone])
    data, _ = cfg.load()
    save_checkpoint(path, {
        "model": model.state_dict(), "config": cfg.to_dict(), "preprocess": cfg.preprocess().to_json(),
        "class_names": data.class_names, "dataset": data.name, "method": "sadh", "backbone": backbone, "bits": BITS,
        "num_classes": data.num_classes, "best_map": None,
    })
    return path


def find_checkpoint(backbone: str, runs: Path, work: Path, epochs: int) -> tuple[Path, str]:
    """(checkpoint, where its weights come from): a trained one at the bench size if any, else pretrained / trained here."""
    trained = RunFolder(runs / f"{backbone}-sadh-{BITS}b").best
    if trained.is_file() and load_model(trained)[1].preprocess.input_size == SIZES[backbone]:
        return trained, f"trained checkpoint {trained}"
    if backbone != "small_cnn":
        return pretrained_checkpoint(backbone, work / f"{backbone}.pt"), "ImageNet-pretrained backbone, freshly initialised hash heads"
    cfg = TrainConfig(backbone=backbone, bits=BITS, epochs=epochs, out=str(runs), run_name=f"export-bench-{backbone}-{BITS}b", resume=False)
    cfg.eval_every = epochs
    done = RunFolder.of(cfg).best
    if not done.is_file():
        train(cfg)
    return done, f"trained here: {epochs} epochs of the fast recipe ({done})"


def cpu_candidates(ckpt: Path, result, work: Path, calib_images: int, speed_seconds: float) -> dict:  # noqa: ANN001
    """Speed of each candidate INT8 CPU format, quantised from the same model and calibration ranges."""
    _, info = load_model(ckpt)
    data, split = checkpoint_dataset(ckpt)
    calib = model_inputs(data, spread(split.train, calib_images), info.preprocess)
    prepared = work / "prepared.onnx"
    preprocess_for_quantization(result.path("fp32"), prepared)
    out = {}
    for name, flavour in CPU_CANDIDATES.items():
        path = work / f"candidate-{name}.onnx"
        quantize_int8(prepared, path, calib, flavour, "minmax", result.path("calib"))
        out[name] = {
            f"batch{b}_ips": round(images_per_second(path, b, info.preprocess.input_size, seconds=speed_seconds), 1)
            for b in (1, THROUGHPUT_BATCH)
        }
    return out


def main() -> None:
    """Export, evaluate and time each backbone; merge the results into the JSON file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="efficientnet_lite0,small_cnn")
    p.add_argument("--queries", type=int, default=200, help="queries (evenly spread over the query split)")
    p.add_argument("--database", type=int, default=1000, help="database items (evenly spread subsample)")
    p.add_argument("--calib-images", type=int, default=300)
    p.add_argument("--speed-seconds", type=float, default=3.0)
    p.add_argument("--int8-threshold", type=float, default=0.0, help="export parity gate for INT8 (the bench only measures)")
    p.add_argument("--epochs", type=int, default=3, help="small CNN epochs when no trained checkpoint exists")
    p.add_argument("--runs", type=Path, default=HERE / "runs")
    p.add_argument("--results", type=Path, default=HERE / "results" / "export_bench.json")
    args = p.parse_args()

    for backbone in args.backbones.split(","):
        with tempfile.TemporaryDirectory(prefix="sadh-export-bench-") as tmp:
            work = Path(tmp)
            ckpt, weights = find_checkpoint(backbone, args.runs, work, args.epochs)
            t0 = time.perf_counter()
            settings = ExportSettings(fp16=True, int8=True, calib_images=args.calib_images, int8_threshold=args.int8_threshold)
            result = export_model(ckpt, work / "out", settings, log=print)
            export_s = time.perf_counter() - t0
            models = {a.precision: a.path for a in result.artifacts if a.path.suffix == ".onnx"}
            rows = report_export(ckpt, models, queries=args.queries, database=args.database, speed_seconds=args.speed_seconds)
            by = {(r.model if r.model == "torch" else r.precision): r for r in rows}
            fp32 = by["fp32"]
            entry = {
                "weights": weights,
                "input_size": SIZES[backbone],
                "bits": BITS,
                "export_s": round(export_s, 1),
                "artifacts": [
                    {"file": a.path.name, "precision": a.precision, "size_bytes": a.size_bytes, "seconds": round(a.seconds, 2),
                     "bit_agreement": None if a.parity is None else round(a.parity.bit_agreement, 5),
                     "max_abs_diff": None if a.parity is None else float(f"{a.parity.max_abs_diff:.3g}")}
                    for a in result.artifacts
                ],
                "report": [r.to_dict() for r in rows],
                "int8_map_drop": {p: round(fp32.map - by[p].map, 4) for p in ("int8-qdq", "int8-cpu")},
                "cpu_int8_speedup": {
                    "batch1": round(by["int8-cpu"].batch1_ips / fp32.batch1_ips, 2),
                    "batch32": round(by["int8-cpu"].batch32_ips / fp32.batch32_ips, 2),
                },
                "cpu_format_candidates": cpu_candidates(ckpt, result, work, args.calib_images, args.speed_seconds),
                "machine": (
                    f"{platform.machine()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} at the end, "
                    f"onnxruntime {ort.__version__}, torch {torch.__version__}, sadh {sadh_version()}"
                ),
            }
        entry["protocol"] = (
            f"fashion-mnist default split; mAP@all with sign codes, {args.queries} queries vs {args.database} database "
            "items (evenly spread subsets); onnxruntime CPU, 2 intra-op threads, images/s at batch 1 and 32"
        )
        results = json.loads(args.results.read_text()) if args.results.is_file() else {}  # re-read: runs may overlap
        results["targets"] = TARGETS
        results.setdefault("backbones", {})[backbone] = entry
        atomic_write_text(args.results, json.dumps(results, indent=1) + "\n")
        print(json.dumps({backbone: {k: entry[k] for k in ("weights", "int8_map_drop", "cpu_int8_speedup", "cpu_format_candidates")}}, indent=1), flush=True)


if __name__ == "__main__":
    main()
