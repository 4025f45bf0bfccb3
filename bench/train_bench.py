"""Training benchmark: mAP@all on Fashion-MNIST (CIFAR-style split) for SADH vs DPSH vs CSQ, same backbone and budget.

Protocol: `load_dataset("fashion-mnist")`: per class 100 queries and 500 training images, the rest (69,000) is the
database. Every run evaluates once, after its last epoch, against the whole database (no model selection on the
queries). Results merge into a JSON file (written atomically after each run), keyed backbone/method/bits; a finished
run folder under --runs is reused (its checkpoint holds the history), so the JSON can be rebuilt without retraining.

    nice python bench/train_bench.py --bits 32 --methods sadh,dpsh,csq --backbones small_cnn
    nice python bench/train_bench.py --bits 16,32,48,64 --methods sadh,dpsh,csq --backbones small_cnn,efficientnet_lite0
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import time
from pathlib import Path

import torch

from sadh.sdk.atomic import atomic_write_text
from sadh.train.config import TrainConfig
from sadh.train.trainer import load_data, train

HERE = Path(__file__).resolve().parent
TARGETS = {"small_cnn": 0.80, "efficientnet_lite0": 0.85}  # SADH mAP@all at 32 bits
INPUT_SIZE = {"efficientnet_lite0": 64}  # small inputs keep the pretrained backbone affordable on CPU
PROTOCOL = (
    "fashion-mnist, per class 100 queries / 500 train / rest database (69,000); mAP@all with sign codes, "
    "ties by database index; one evaluation, after the last epoch"
)


def _csv(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def main() -> None:
    """Run the requested grid and merge its results into the JSON file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bits", default="32", help="comma list, e.g. 16,32,48,64")
    p.add_argument("--methods", default="sadh,dpsh,csq")
    p.add_argument("--backbones", default="small_cnn")
    p.add_argument("--epochs", type=int, default=None, help="stage-2 epochs (default: the recipe's)")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--runs", type=Path, default=HERE / "runs", help="where the run folders go")
    p.add_argument("--results", type=Path, default=HERE / "results" / "train_bench.json")
    args = p.parse_args()

    data, split = load_data(TrainConfig())
    for backbone in _csv(args.backbones):
        for bits in (int(b) for b in _csv(args.bits)):
            for method in _csv(args.methods):
                cfg = TrainConfig(
                    method=method, backbone=backbone, bits=bits, recipe=args.recipe, epochs=args.epochs,
                    input_size=INPUT_SIZE.get(backbone), threads=args.threads, out=str(args.runs),
                    run_name=f"{backbone}-{method}-{bits}b", resume=True, eval_database=0,
                )
                cfg.eval_every = cfg.epochs
                t0 = time.perf_counter()
                result = train(cfg, data, split)
                run = {
                    "map_at_all": result.best_map,
                    "train_s": round(sum(h["seconds"] for h in result.history), 1),
                    "eval_s": round(sum(h.get("eval_seconds", 0.0) for h in result.history), 1),
                    "call_wall_s": round(time.perf_counter() - t0, 1),  # small when a finished run was reused
                    "settings": cfg.to_dict(),
                    "history": result.history,
                    "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
                }
                record(args.results, f"{backbone}/{method}/{bits}", run)
                print(f"{backbone}/{method}/{bits}: mAP@all {result.best_map:.4f} (training {run['train_s']} s)", flush=True)


def record(path: Path, key: str, run: dict) -> None:
    """Merge one run into the results file under a lock (several bench processes may share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.is_file() else {}
        results["protocol"] = PROTOCOL
        results["targets"] = {f"{k} sadh 32b": v for k, v in TARGETS.items()}
        results.setdefault("runs", {})[key] = run
        atomic_write_text(path, json.dumps(results, indent=1))
    finally:
        os.close(lock)


if __name__ == "__main__":
    main()
