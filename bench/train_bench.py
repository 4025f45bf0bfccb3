"""Training benchmark: retrieval mAP of SADH vs DPSH vs CSQ on the same backbone, data and budget.

Protocols (`--data`):
* fashion-mnist: per class 100 queries and 500 training images, the rest (64,000) is the database; mAP@all.
* fashion-mnist-mosaic, fashion-mnist-mosaic3: the multi-label mosaic benchmarks (2x2 and 3x3), 1,000 queries /
  5,000 train / 20,000 database; mAP@1000 (their protocol in sadh.sdk.metrics.PROTOCOL_TOPK: the NUS-WIDE /
  MS-COCO mAP@5000 scaled to a 20,000-item database, ~5 % of it), mAP@5000 and mAP@all beside it, and the
  graded metrics (relevance = labels shared): NDCG@100, NDCG@1000, ACG@100, WAP@1000, plain and tie-aware.
Every run evaluates once, after its last epoch, against the whole database (no model selection on the
queries). Results merge into a JSON file (written atomically after each run, under a lock, so several bench
processes may share it), keyed [data:]backbone[@size]/method/bits[/seedN][/recipe][/marginX]; a finished run folder
under --runs is reused (its checkpoint holds the network and the history) and its metrics are computed again, so the
JSON can be rebuilt, or gain new metrics, without retraining. `--jobs N` runs the grid as N parallel processes (one
GPU hosts several small runs); `--deadline S` stops what is unfinished.

    nice python bench/train_bench.py --bits 16,32,48,64 --methods sadh,dpsh,csq --backbones small_cnn --threads 1
    python bench/train_bench.py --backbones efficientnet_lite0 --bits 16,32,48,64 --jobs 6 --device cuda
    python bench/train_bench.py --data fashion-mnist-mosaic --bits 32,64 --results bench/results/train_bench_mosaic.json
"""
from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from sadh.sdk.atomic import atomic_write_text
from sadh.sdk.data import LabeledImages, Split
from sadh.sdk.data.sources import MOSAICS
from sadh.sdk.metrics import GRADED_REPORT, GRADED_TOPKS, default_topk, graded_metrics, mean_average_precision
from sadh.train.config import TrainConfig
from sadh.train.evaluate import encode
from sadh.train.trainer import TrainResult, train

HERE = Path(__file__).resolve().parent
TARGETS = {"small_cnn": 0.80, "efficientnet_lite0": 0.85}  # SADH mAP@all at 32 bits on fashion-mnist
INPUT_SIZE = {"efficientnet_lite0": 64}  # small inputs keep the pretrained backbone affordable on CPU
ALSO_TOPK = (5000, None)  # mAP cut-offs the mosaic sets (MOSAICS) report beside the main one (None: all)
PROTOCOL = {
    "fashion-mnist": (
        "fashion-mnist, per class 100 queries / 500 train / rest database (64,000); mAP@all with sign codes, "
        "ties by database index; one evaluation, after the last epoch"
    ),
    "fashion-mnist-mosaic": (
        "fashion-mnist-mosaic (2x2 mosaics, 1-4 classes), 1,000 queries / 5,000 train / 20,000 database; relevant = "
        "shares a label; mAP@1000 with sign codes, ties by database index; one evaluation, after the last epoch; graded "
        "metrics with relevance = labels shared (NDCG@K with gain 2^rel - 1, ACG@K, WAP@K; ties by database index, "
        "tie-aware beside)"
    ),
    "fashion-mnist-mosaic3": (
        "fashion-mnist-mosaic3 (3x3 mosaics, 2-6 classes), 1,000 queries / 5,000 train / 20,000 database; relevant = "
        "shares a label; mAP@1000 with sign codes, ties by database index; one evaluation, after the last epoch; graded "
        "metrics with relevance = labels shared (NDCG@K with gain 2^rel - 1, ACG@K, WAP@K; ties by database index, "
        "tie-aware beside)"
    ),
}


def _csv(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def run_names(
    data: str, backbone: str, size: int | None, method: str, bits: int, seed: int, margin: float | None = None,
    recipe: str = TrainConfig.recipe,
) -> tuple[str, str]:
    """The results-file key and the run folder's name of one run."""
    where = ("" if data == "fashion-mnist" else f"{data}:") + backbone
    where += f"@{size}" if size is not None and size != INPUT_SIZE.get(backbone) else ""
    tail = (f"/seed{seed}" if seed else "") + (f"/{recipe}" if recipe != TrainConfig.recipe else "")
    tail += f"/margin{margin:g}" if margin is not None else ""
    return f"{where}/{method}/{bits}{tail}", f"{where}-{method}-{bits}b{tail}".replace(":", "-").replace("/", "-")


def main() -> None:
    """Run the requested grid (here, or as --jobs parallel processes) and merge its results into the JSON file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", choices=sorted(PROTOCOL))
    p.add_argument("--bits", default="32", help="comma list, e.g. 16,32,48,64")
    p.add_argument("--methods", default="sadh,dpsh,csq")
    p.add_argument("--backbones", default="small_cnn")
    p.add_argument("--input-size", type=int, default=None, help="crop size (default: 64 for EfficientNet-Lite0, else the backbone's)")
    p.add_argument("--seed", type=int, default=0, help="training seed (the split stays seed 0)")
    p.add_argument("--epochs", type=int, default=None, help="stage-2 epochs (default: the recipe's)")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--label-margin", type=float, default=None, help="stage-1 margin (default: the recipe's); keys get /marginX")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes, one run each")
    p.add_argument("--deadline", type=float, default=None, help="seconds: stop unfinished runs after this (--jobs)")
    p.add_argument("--runs", type=Path, default=HERE / "runs", help="where the run folders go")
    p.add_argument("--results", type=Path, default=HERE / "results" / "train_bench.json")
    args = p.parse_args()

    grid = list(itertools.product(_csv(args.backbones), (int(b) for b in _csv(args.bits)), _csv(args.methods)))
    if args.jobs > 1:
        run_parallel(grid, args)
        return
    data, split = TrainConfig(data=args.data).load()
    for backbone, bits, method in grid:
        size = args.input_size or INPUT_SIZE.get(backbone)
        key, folder = run_names(args.data, backbone, size, method, bits, args.seed, args.label_margin, args.recipe)
        cfg = TrainConfig(
            method=method, backbone=backbone, bits=bits, recipe=args.recipe, epochs=args.epochs, data=args.data,
            input_size=size, threads=args.threads, out=str(args.runs), run_name=folder,
            resume=True, eval_database=0, topk=default_topk(data.labels, args.data), seed=args.seed, device=args.device,
            label_margin=args.label_margin,
            progress=sys.stderr.isatty(),
        )
        cfg.eval_every = cfg.epochs
        t0 = time.perf_counter()
        result = train(cfg, data, split)
        run = {
            "map": result.best_map,
            "metric": f"mAP@{cfg.topk or 'all'}",
            "train_s": round(sum(h["seconds"] for h in result.history), 1),
            "eval_s": round(sum(h.get("eval_seconds", 0.0) for h in result.history), 1),
            "call_wall_s": round(time.perf_counter() - t0, 1),  # small when a finished run was reused
            "settings": cfg.to_dict(),
            "history": result.history,
            "machine": machine(),
        }
        run.update(final_metrics(result, cfg, data, split, args.data))
        record(args.results, args.data, key, run)
        graded = "".join(f", {name} {run['graded'][name]:.4f}" for name in run.get("graded", {}) if "tie" not in name)
        print(f"{key}: mAP {result.best_map:.4f}{graded} (training {run['train_s']} s)", flush=True)


def final_metrics(result: TrainResult, cfg: TrainConfig, data: LabeledImages, split: Split, name: str) -> dict[str, dict]:
    """For the mosaic sets, the final network's mAP at ALSO_TOPK ("map_at": keys "5000", "all") and graded metrics
    ("graded": "ndcg@100", ..., and the tie-aware NDCG / ACG); nothing for other data."""
    if name not in MOSAICS:
        return {}
    pre = cfg.preprocess()
    q, db = (encode(result.model, data.subset(idx), pre) for idx in (split.query, split.database))
    labels_q, labels_db = data.labels[split.query], data.labels[split.database]
    scores = {k: graded_metrics(q, db, labels_q, labels_db, topk=k) for k in GRADED_TOPKS}
    graded = {f"{m}@{k}": getattr(scores[k], m) for m, k in GRADED_REPORT}
    graded.update({f"{m}@{k}_tie_aware": getattr(scores[k], f"tie_aware_{m}") for m, k in GRADED_REPORT if m != "wap"})
    maps = {str(k or "all"): mean_average_precision(q, db, labels_q, labels_db, topk=k).map for k in ALSO_TOPK}
    return {"map_at": maps, "graded": graded}


def machine() -> str:
    """Where a run ran, in words."""
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{platform.machine()}{gpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def run_parallel(grid: list[tuple[str, int, str]], args: argparse.Namespace) -> None:
    """Run each grid point as its own process of this script, --jobs at a time, until done or --deadline."""
    passed = ["--data", args.data, "--seed", str(args.seed), "--recipe", args.recipe, "--device", args.device]
    passed += ["--runs", str(args.runs), "--results", str(args.results)]
    optional = (("--input-size", args.input_size), ("--epochs", args.epochs), ("--threads", args.threads), ("--label-margin", args.label_margin))
    for flag, value in optional:
        passed += [flag, str(value)] if value is not None else []
    deadline = time.monotonic() + args.deadline if args.deadline else float("inf")
    args.runs.mkdir(parents=True, exist_ok=True)
    todo, running, unfinished = list(grid), [], []
    while todo or running:
        while todo and len(running) < args.jobs and time.monotonic() < deadline:
            backbone, bits, method = todo.pop(0)
            point = ["--backbones", backbone, "--bits", str(bits), "--methods", method]
            size = args.input_size or INPUT_SIZE.get(backbone)
            folder = run_names(args.data, backbone, size, method, bits, args.seed, args.label_margin, args.recipe)[1]
            log = open(args.runs / f"{folder}.log", "w")
            cmd = [sys.executable, __file__, *passed, *point]
            running.append((point, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        if time.monotonic() >= deadline:
            unfinished += [" ".join(map(str, t)) for t in todo]
            todo = []
            for _, proc, _ in running:
                proc.terminate()
        time.sleep(0.5)
        for item in [r for r in running if r[1].poll() is not None]:
            point, proc, log = item
            log.close()
            running.remove(item)
            print(f"{' '.join(point)}: exit {proc.returncode}", flush=True)
            if proc.returncode != 0:
                unfinished.append(" ".join(point))
    if unfinished:
        print(f"not finished: {'; '.join(unfinished)}", flush=True)


def record(path: Path, data: str, key: str, run: dict) -> None:
    """Merge one run into the results file under a lock (several bench processes may share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.is_file() else {}
        results["protocol"] = PROTOCOL[data]
        if data == "fashion-mnist":
            results["targets"] = {f"{k} sadh 32b": v for k, v in TARGETS.items()}
        results.setdefault("runs", {})[key] = run
        atomic_write_text(path, json.dumps(results, indent=1))
    finally:
        os.close(lock)


if __name__ == "__main__":
    main()
